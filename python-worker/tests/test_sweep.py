"""The sweep end to end (configs/sweeps/study-quick.json through the public API, a real orchestrator and worker):
killed halfway with SIGKILL and rerun, nothing finished is redone and nothing is lost; the metrics it reports
agree with an independent computation from results.jsonl and the evaluator. Plus config validation."""
import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from scipy import linalg

from noisesearch_research.config import ConfigError, load_config, parse_config
from noisesearch_research.sweep import units_of

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "configs" / "sweeps" / "study-quick.json"
PY = sys.executable


def _sweep(out: Path, *extra: str) -> subprocess.Popen:
    # its own process group, so that SIGKILL reaches the sweep, the orchestrator and the worker together
    return subprocess.Popen([PY, "-m", "noisesearch_research.sweep", str(QUICK), "--out", str(out), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, NOISESEARCH_SWEEP_REPO=os.environ.get("NOISESEARCH_SWEEP_REPO", "")))


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    cfg = load_config(QUICK)
    units = {u["unit"] for u in units_of(cfg)}
    results = out / "results.jsonl"
    # 1) start, and SIGKILL the whole group once about half of the requests have finished
    p = _sweep(out, "--no-report")
    deadline = time.monotonic() + 240
    while len(_lines(results)) < len(units) // 2:
        assert p.poll() is None, p.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "the quick sweep made no progress"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before = _lines(results)
    done_before = {json.loads(line)["unit"] for line in before if line.endswith(b"\n")}
    assert 0 < len(done_before) < len(units)
    # 2) rerun to the end (metrics, figures, report)
    p = _sweep(out)
    _, err = p.communicate(timeout=300)
    err = err.decode()
    assert p.returncode == 0, err[-3000:]
    return {"out": out, "cfg": cfg, "units": units, "before": before, "done_before": done_before, "stderr": err}


def test_killed_sweep_resumes_without_redoing_or_losing_anything(quick_run):
    out, units, before = quick_run["out"], quick_run["units"], quick_run["before"]
    after = _lines(out / "results.jsonl")
    complete_before = [line for line in before if line.endswith(b"\n")]
    assert after[:len(complete_before)] == complete_before  # nothing finished was lost or rewritten
    rows = [json.loads(line) for line in after]
    seen_units = [r["unit"] for r in rows]
    # one row per sample; a unit is only ever written once (the baseline's batched units write one row per sample)
    per_unit = {}
    for r in rows:
        per_unit.setdefault(r["unit"], set()).add(r["index"])
    assert set(per_unit) == units
    assert len(rows) == sum(len(v) for v in per_unit.values())
    redone = quick_run["done_before"] & {r["unit"] for r in rows[len(complete_before):]}
    assert not redone, f"finished units redone: {sorted(redone)[:3]}"
    assert f"{len(quick_run['done_before'])} already done" in quick_run["stderr"]
    assert len(set(seen_units)) == len(units)


def test_rows_carry_their_recipe_and_accounting(quick_run):
    rows = [json.loads(line) for line in _lines(quick_run["out"] / "results.jsonl")]
    for r in rows:
        assert r["recipe"] and r["request"]["condition"]["class_label"] == r["class"]
        assert r["nfes"]["total"] == r["nfes"]["search"] + r["nfes"]["final"] > 0
        assert r["png_b64"]
    search = [r for r in rows if r["spec"]["kind"] == "search"]
    assert all(int(r["accounting"]["search_nfes"]) == r["plan"]["search_nfes"] for r in search)
    assert any("candidates" in r for r in rows)


def test_run_folder_has_metrics_figures_and_report(quick_run):
    out = quick_run["out"]
    for name in ("metrics.csv", "report.md", "rank-correlations.csv", "figures/scaling-all.png",
                 "figures/scaling-all.svg", "figures/scaling-verifiers.png", "figures/samples-00.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "figures/scaling-all.png" in report and '"name": "study-quick"' in report


# ---- an independent computation of the metrics, from results.jsonl and the evaluator checkpoint ----

def _sample(row) -> np.ndarray:
    img = np.array(Image.open(io.BytesIO(base64.b64decode(row["png_b64"]))), dtype=np.float64)
    x = np.full((32, 32), -1.0)
    x[2:30, 2:30] = img / 127.5 - 1
    if row.get("tensor"):
        x = np.frombuffer(base64.b64decode(row["tensor"]["b64"]), "<f4").reshape(32, 32).astype(np.float64)
    return x


def _fid(a, mu_r, s_r):
    mu, s = a.mean(0), np.cov(a, rowvar=False)
    # tr sqrt(S1 S2) = sum of square roots of the eigenvalues of S1 S2 (real, >= 0 up to round-off)
    ev = np.linalg.eigvals(s @ s_r)
    return float(((mu - mu_r) ** 2).sum() + np.trace(s) + np.trace(s_r) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum())


def _pr(real, fake, k=3):
    def radii(x):
        return np.array([sorted(np.linalg.norm(x - p, axis=1))[k] for p in x])
    rr, rf = radii(real), radii(fake)
    prec = np.mean([any(np.linalg.norm(f - r) <= rad for r, rad in zip(real, rr)) for f in fake])
    rec = np.mean([any(np.linalg.norm(r - f) <= rad for f, rad in zip(fake, rf)) for r in real])
    return prec, rec


def test_metrics_agree_with_an_independent_computation(quick_run):
    from noisesearch_worker.classifiers import EvaluatorResNet
    from noisesearch_worker.data import load_split
    ckpt = ROOT / "python-worker" / "checkpoints"
    net = EvaluatorResNet()
    net.load_state_dict(load_file(str(ckpt / "evaluator-resnet.safetensors")))
    net.eval()
    stats = np.load(ckpt / "evaluator-resnet.test-stats.npz")
    cfg = quick_run["cfg"]
    rows = [json.loads(line) for line in _lines(quick_run["out"] / "results.jsonl")]
    xt, yt = load_split("test")
    per_class = max(4, cfg.samples_per_class)  # test images per conditioning class, at least k + 1
    ref_idx = np.concatenate([np.flatnonzero(yt.numpy() == c)[:per_class] for c in sorted(cfg.classes)])
    with torch.no_grad():
        ref = net.features(xt[ref_idx]).double().numpy()
    import csv
    table = {r["cell"]: r for r in csv.DictReader(open(quick_run["out"] / "metrics.csv"))}
    checked = 0
    for cell in cfg.cells:
        fids, iss, accs, precs, recs, vs, divs = [], [], [], [], [], [], []
        for seed in cfg.seeds:
            rs = [r for r in rows if r["cell"] == cell.key and r["seed"] == seed]
            assert len(rs) == len(cfg.classes) * cfg.samples_per_class
            x = torch.tensor(np.stack([_sample(r) for r in rs])[:, None], dtype=torch.float32)
            with torch.no_grad():
                f = net.features(x)
                p = torch.softmax(net.head(f).double(), 1).numpy()
            f = f.double().numpy()
            fids.append(_fid(f, stats["mu"], stats["sigma"]))
            py = p.mean(0)
            iss.append(np.exp(np.mean([np.sum(q * (np.log(q + 1e-12) - np.log(py + 1e-12))) for q in p])))
            accs.append(np.mean(p.argmax(1) == np.array([r["class"] for r in rs])))
            pr = _pr(ref, f)
            precs.append(pr[0]), recs.append(pr[1])
            ys = np.array([r["class"] for r in rs])
            divs.append(np.mean([np.mean([np.linalg.norm(a - b) for i, a in enumerate(f[ys == c]) for b in f[ys == c][i + 1:]])
                                 for c in sorted(set(ys))]))
            sel = rs[0]["selection_verifiers"]
            vs.append(np.mean([np.mean([r["scores"][v] for v in sel]) for r in rs]))
        t = table[cell.key]
        assert float(t["fid_mean"]) == pytest.approx(np.mean(fids), rel=1e-4, abs=1e-3), cell.group
        assert float(t["fid_std"]) == pytest.approx(np.std(fids, ddof=1), rel=1e-3, abs=1e-3)
        assert float(t["inception_score_mean"]) == pytest.approx(np.mean(iss), rel=1e-5)
        assert float(t["accuracy_mean"]) == pytest.approx(np.mean(accs), abs=1e-9)
        assert float(t["precision_mean"]) == pytest.approx(np.mean(precs), abs=1e-9)
        assert float(t["recall_mean"]) == pytest.approx(np.mean(recs), abs=1e-9)
        assert float(t["verifier_score_mean"]) == pytest.approx(np.mean(vs), rel=1e-5)
        assert float(t["diversity_mean"]) == pytest.approx(np.mean(divs), rel=1e-5)
        assert float(t["nfes_total"]) == pytest.approx(np.mean([r["nfes"]["total"] for r in rows if r["cell"] == cell.key]))
        checked += 1
    assert checked == len(cfg.cells)


# ---- config validation: errors name the key ----

BASE = {"name": "t", "algorithms": [{"algorithm": "random", "vary": {"n": [1, 2]}}]}


@pytest.mark.parametrize("patch, message", [
    ({"algorithms": [{"algorithm": "random", "vary": {"n": [0]}}]}, r"algorithms\[0\]\.vary\.n\[0\]: expected an integer >= 1"),
    ({"algorithms": [{"algorithm": "annealing", "vary": {"n": [1]}}]}, r"algorithms\[0\]\.algorithm: expected one of"),
    ({"algorithms": [{"algorithm": "random"}]}, r"algorithms\[0\]: give exactly one of `vary`"),
    ({"algorithms": [{"algorithm": "zero-order", "params": {"n": 2}, "budgets": [64]}]}, r"algorithms\[0\]\.params\.k: required"),
    ({"algorithms": [{"algorithm": "random", "vary": {"n": [1]}, "params": {"k": 3}}]}, r"algorithms\[0\]\.params\.k: unknown key"),
    ({"samples_per_class": "many"}, r"samples_per_class: expected an integer >= 1"),
    ({"classes": [3, 12]}, r"classes: class 12 out of range"),
    ({"search_solver": {"solver": "rk4", "steps": 3}}, r"search_solver\.solver: expected one of"),
    ({"baseline": {"steps": []}}, r"baseline\.steps: expected a non-empty list"),
    ({"verifiers": [{"verifiers": ["a"], "ensemble": "max"}]}, r"verifiers\[0\]\.ensemble: expected one of"),
    ({"colour": "blue"}, r"colour: unknown key"),
])
def test_config_errors_name_the_key(patch, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, **patch})


def test_yaml_config_and_the_shipped_configs(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: t\nclasses: all\nseeds: [0, 1]\nalgorithms:\n  - {algorithm: random, vary: {n: [1, 4]}}\n"
                 "baseline: {steps: [5, 10], guidance: 1.0}\n")
    cfg = load_config(p)
    assert cfg.classes == list(range(10)) and len(cfg.cells) == 4
    assert len(units_of(cfg)) == 2 * 2 * 10 + 2 * 2 * 10  # search: per sample; baseline: per (seed, class)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nalgorithms: [{algorithm: random, vary: {n: [x]}}]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: algorithms\[0\]\.vary\.n\[0\]"):
        load_config(bad)
    for name in ("study.json", "study-quick.json"):
        cfg = load_config(ROOT / "configs" / "sweeps" / name)
        assert len({c.key for c in cfg.cells}) == len(cfg.cells)

"""The sweep end to end (configs/sweeps/study-quick.json through the public API, a real orchestrator and worker):
killed halfway with SIGKILL and rerun, nothing finished is redone and nothing is lost; the metrics it reports
agree with an independent computation from results.jsonl and the evaluator. Plus config validation."""
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    try:
        while len(_lines(results)) < len(units) // 2:
            assert p.poll() is None, p.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "the quick sweep made no progress"
            time.sleep(0.2)
    finally:  # also on a failed assertion: an orphaned sweep keeps its orchestrator and worker running
        with contextlib.suppress(ProcessLookupError):
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

def test_metrics_agree_with_an_independent_computation_from_tensors_and_from_pngs(quick_run):
    """noisesearch_research.recheck recomputes every metric without metrics.py: from the raw tensors it agrees
    with metrics.csv to float noise, from the PNGs to within 8-bit rounding (its TOL_TENSOR and TOL_PNG)."""
    from noisesearch_research import recheck
    out, cfg = quick_run["out"], quick_run["cfg"]
    table = {r["cell"]: r for r in csv.DictReader(open(out / "metrics.csv"))}
    net = recheck.Net()
    ref = recheck.Reference(net)
    for source, tol in (("tensor", recheck.TOL_TENSOR), ("png", recheck.TOL_PNG)):
        mine = recheck.recompute(out, source, net, ref)
        assert set(mine) == {c.key for c in cfg.cells} | {"real"}
        assert all(m["n_per_seed"] == len(cfg.classes) * cfg.samples_per_class for m in mine.values())
        worst, bad = recheck.compare(table, mine, tol, len(cfg.seeds))
        assert not bad, bad[:5]
        assert {"fid_mean", "precision_mean", "recall_mean", "fid_pooled", "diversity_mean"} <= set(worst)
    # the tensors were judged (not the PNGs): the two differ, if only by the rounding
    assert any(float(table[k]["fid_mean"]) != mine[k]["fid_mean"] for k in table if k != "real")
    # the real-data row's precision/recall (as many reference images as samples) are those of real data
    assert float(table["real"]["precision_mean"]) >= 0.75 and float(table["real"]["recall_mean"]) >= 0.75
    assert recheck.main([str(out)]) == 0 and "agrees" in (out / "recheck.md").read_text()


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


def test_the_local_orchestrator_has_its_own_database():
    # two sweeps from one checkout must not share data/noisesearch.db ("database is locked" lost requests)
    from noisesearch_research.sweep import orchestrator_env
    assert orchestrator_env(load_config(QUICK))["NOISESEARCH_DB"] == ":memory:"

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
    assert "## Compute: NFEs, verifier calls and wall time" in report and (out / "compute-ranking.csv").stat().st_size > 0


def test_metrics_carry_verifier_cost_and_wall_time_beside_nfes(quick_run):
    """metrics.csv's per-sample costs are the means of the rows' own accounting (a batched baseline request's
    costs shared among its outputs), and every search cell scored its samples."""
    out = quick_run["out"]
    rows = [json.loads(line) for line in _lines(out / "results.jsonl")]
    table = {r["cell"]: r for r in csv.DictReader(open(out / "metrics.csv"))}
    per_unit: dict[str, int] = {}
    for r in rows:
        per_unit[r["unit"]] = per_unit.get(r["unit"], 0) + 1
    for key, c in table.items():
        if key == "real":
            continue
        mine = [r for r in rows if r["cell"] == key]
        calls = sum(int(r["accounting"].get("verifier_calls", 0)) / per_unit[r["unit"]] for r in mine) / len(mine)
        secs = sum(float(r["accounting"].get("verifier_seconds", 0)) / per_unit[r["unit"]] for r in mine) / len(mine)
        wall = sum(r["wall_s"] / per_unit[r["unit"]] for r in mine) / len(mine)
        assert float(c["verifier_calls_per_sample"]) == pytest.approx(calls, rel=1e-5)
        assert float(c["verifier_s_per_sample"]) == pytest.approx(secs, rel=1e-5)
        assert float(c["wall_s_per_sample"]) == pytest.approx(wall, rel=1e-5)
        if c["kind"] == "search":
            assert calls >= 1 and 0 < secs < wall


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


def test_config_takes_rollover_budget_initial_noises():
    cfg = parse_config({**BASE, "algorithms": [{"algorithm": "rollover-budget", "params": {"nfes": 500, "initial_noises": 25},
                                                 "budgets": [500]}]})
    assert [c.spec["params"] for c in cfg.cells] == [{"nfes": 500, "initial_noises": 25}]


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


def _cell(group, nfes, wall, score, algorithm="zero-order"):
    return {"group": group, "label": f"{group} @ {nfes}", "kind": "search", "algorithm": algorithm, "n_samples": 9,
            "nfes_total": float(nfes), "wall_s_per_sample": wall, "verifier_score_mean": score}


def test_the_compute_ranking_counts_nfes_and_wall_time_separately():
    """A curve that reaches random search's score with fewer NFEs but more wall time (its verifiers run every
    round) ranks first by NFEs and behind by wall time; a curve that never reaches the score is not ranked."""
    from noisesearch_research.report import compute_ranking
    cells = [_cell("random", 36, 0.5, 4.0, "random"), _cell("random", 144, 1.0, 4.6, "random"),
             _cell("guided", 36, 3.0, 4.1), _cell("guided", 72, 4.0, 4.7),
             _cell("lean", 72, 0.6, 4.2), _cell("lean", 144, 0.9, 4.65),
             _cell("weak", 576, 2.0, 3.0), {"group": "real", "kind": "real", "n_samples": 9}]
    rank = {(r["target_nfes"], r["curve"]): r for r in compute_ranking(cells)}
    t144 = {g: rank[(144.0, g)] for g in ("random", "guided", "lean", "weak")}
    assert t144["guided"]["by_nfes_nfes"] == 72 and t144["guided"]["by_nfes_cost_ratio"] == 0.5
    assert t144["guided"]["by_wall_wall_s"] == 4.0 and t144["guided"]["by_wall_cost_ratio"] == 4.0
    assert [t144[g]["rank_nfes"] for g in ("guided", "lean", "random")] == [1, 2, 3]  # a tie: the higher score first
    assert t144["lean"]["rank_wall"] == 1 and t144["random"]["rank_wall"] == 2 and t144["guided"]["rank_wall"] == 3
    assert t144["weak"]["by_nfes_cell"] == "" and "rank_nfes" not in t144["weak"]
    t36 = rank[(36.0, "guided")]  # the cheapest reaching cell on each axis, not the best-scoring one
    assert t36["by_nfes_nfes"] == 36 and t36["by_wall_wall_s"] == 3.0


def test_the_local_orchestrator_has_its_own_database():
    # two sweeps from one checkout must not share data/noisesearch.db ("database is locked" lost requests)
    from noisesearch_research.sweep import orchestrator_env
    assert orchestrator_env(load_config(QUICK))["NOISESEARCH_DB"] == ":memory:"

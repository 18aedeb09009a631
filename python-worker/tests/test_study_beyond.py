"""The equal-compute study configs beyond the paper load, name every algorithm, and build the requests the API takes;
the quick one runs end to end."""
from pathlib import Path

import pytest

from noisesearch.search.v1 import search_pb2 as pb
from noisesearch_research import client as C
from noisesearch_research.config import ALGORITHMS, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["study-beyond.json", "study-beyond-quick.json"])
def test_the_beyond_configs_run_every_algorithm_at_equal_budgets(name):
    cfg = load_config(ROOT / "configs" / "sweeps" / name)
    algos = {c.spec["algorithm"] for c in cfg.cells if c.spec["kind"] == "search"}
    assert algos == set(ALGORITHMS)
    budgets = {c.spec["budget"] for c in cfg.cells if c.spec["algorithm"] == "random"}
    for a in ALGORITHMS:
        own = {c.spec["budget"] for c in cfg.cells if c.spec["algorithm"] == a}
        assert own and own <= budgets, (a, own)  # paths skips budgets it cannot run at, no one adds others


def test_requests_of_the_new_algorithms():
    sh = C.request(algorithm="successive-halving", params={"n": 8, "rungs": [0.7, 0.4], "free_lookahead": True})
    assert sh.WhichOneof("algorithm") == "successive_halving" and list(sh.successive_halving.rungs) == [0.7, 0.4]
    assert sh.successive_halving.free_lookahead
    fk = C.request(algorithm="feynman-kac", params={"k": 4, "potential": "sum", "lambda": 5.0})
    assert fk.feynman_kac.potential == pb.FK_POTENTIAL_SUM and fk.feynman_kac.HasField("lambda")
    rbf = C.request(algorithm="rollover-budget", params={"nfes": 100})
    assert rbf.rollover_budget.nfes == 100
    assert not rbf.rollover_budget.HasField("initial_noises")  # absent = 1
    rbf25 = C.request(algorithm="rollover-budget", params={"nfes": 500, "initial_noises": 25})
    assert rbf25.rollover_budget.initial_noises == 25 and rbf25.rollover_budget.HasField("initial_noises")


def test_the_quick_study_runs_every_algorithm_within_its_budgets(tmp_path):
    """`npm run sweep -- configs/sweeps/study-beyond.json --quick` end to end through the public API: every
    algorithm's cells are sampled in full, no account exceeds its budget, and the report carries the compute
    axes (verifier calls and wall time beside NFEs) and the compute ranking."""
    import csv
    import json
    import os
    import subprocess
    import sys
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "noisesearch_research.sweep", str(ROOT / "configs" / "sweeps" / "study-beyond.json"),
                        "--quick", "--out", str(out), "--no-progress"], cwd=ROOT, capture_output=True, timeout=900,
                       env=dict(os.environ, NOISESEARCH_SWEEP_REPO=os.environ.get("NOISESEARCH_SWEEP_REPO", "")))
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    cfg = load_config(ROOT / "configs" / "sweeps" / "study-beyond-quick.json")
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    per_sample = len(cfg.seeds) * len(cfg.classes) * cfg.samples_per_class
    for cell in cfg.cells:
        mine = [r for r in rows if r["cell"] == cell.key]
        assert len(mine) == per_sample, cell.group
        if cell.spec["kind"] == "search":
            assert all(0 < r["nfes"]["total"] <= cell.spec["budget"] for r in mine), cell.group
    assert {r["spec"]["algorithm"] for r in rows if r["spec"]["kind"] == "search"} == set(ALGORITHMS)
    table = [r for r in csv.DictReader(open(out / "metrics.csv")) if r["kind"] == "search"]
    assert len(table) == sum(c.spec["kind"] == "search" for c in cfg.cells)
    assert all(float(r["verifier_calls_per_sample"]) >= 1 and float(r["wall_s_per_sample"]) > 0 for r in table)
    ranking = list(csv.DictReader(open(out / "compute-ranking.csv")))
    assert ranking and any(r["rank_nfes"] and r["rank_wall"] for r in ranking)
    assert "## Compute: NFEs, verifier calls and wall time" in (out / "report.md").read_text()

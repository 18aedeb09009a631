"""The equal-compute study configs beyond the paper load, name every algorithm, and build the requests the API takes."""
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

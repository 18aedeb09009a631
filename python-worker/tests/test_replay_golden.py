"""Recipes made before the step-level scheduler replay to the same bytes (tests/data/replay-golden.json).

The fixture holds recipes of every kind the search makes (guided Heun 10 at the default guidance 1.5,
unguided Euler, x-predictions, a zero-order neighbour, forward noise and a re-denoise) with the sha256 of
the float32 sample and of its PNG, recorded on the previous code (see tests/make_replay_golden.py) on the
machine named in the fixture: float32 bits are a property of the code and the CPU's instruction set, so on
another CPU the test skips, saying so, until the fixture is re-recorded there from the same old code.
"""
import hashlib
import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from conftest import TEST_DEVICE, machine
from noisesearch.worker.v1 import worker_pb2 as pb

FIXTURE = json.loads((Path(__file__).resolve().parent / "data" / "replay-golden.json").read_text())
GOLDEN = FIXTURE["cases"]
OTHER_MACHINE = FIXTURE.get("machine") != machine()


@pytest.mark.skipif(TEST_DEVICE != "cpu", reason="the fixture's bytes were recorded on the CPU in fp32")
@pytest.mark.skipif(OTHER_MACHINE, reason=f"the fixture was recorded on another CPU ({FIXTURE.get('machine')}), this is "
                    f"{machine()}; re-record it here from the old code (tests/make_replay_golden.py says how)")
@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_recipes_from_the_previous_worker_replay_to_the_same_bytes(stub, case):
    recipe = json_format.ParseDict(case["recipe"], pb.Recipe())
    made = stub.Materialize(pb.MaterializeRequest(namespace="golden-replay", recipes=[recipe])).tensors[0]
    raw = stub.Fetch(pb.FetchRequest(namespace="golden-replay", handles=[made.handle])).tensors[0].raw_data
    png = stub.Decode(pb.DecodeRequest(namespace="golden-replay", model="sit-fmnist", handles=[made.handle])).png[0]
    assert hashlib.sha256(raw).hexdigest() == case["float32_sha256"]
    assert hashlib.sha256(png).hexdigest() == case["png_sha256"]

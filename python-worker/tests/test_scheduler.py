"""The step-level scheduler: shared micro-batches, bits independent of what runs beside, fairness, cancellation."""
import re
import threading
import time

import grpc
import pytest
import torch

from conftest import TEST_DEVICE, label
from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch_worker.config import WorkerConfig, build_engine
from noisesearch_worker.scheduler import EXACT, FAST, Cancelled, ComputeLoop, ModelScheduler, Work, bucket
from noisesearch_worker.server import make_server

M = "sit-fmnist"


# ---------- the scheduler alone, on a fake network ----------

class Recorder:
    """A network that doubles its input and records the batch sizes it saw."""

    def __init__(self, delay=0.0):
        self.sizes, self.delay = [], delay

    def __call__(self, x):
        self.sizes.append(x.shape[0])
        time.sleep(self.delay)
        return x * 2


def test_rows_of_concurrent_calls_share_fixed_micro_batches():
    net = Recorder(delay=0.05)
    s = ModelScheduler(ComputeLoop(), "fake", net, 8, EXACT)
    works = [Work((torch.full((3, 2), float(i)),)) for i in range(4)]
    threads = [threading.Thread(target=s.run, args=(w,)) for w in works]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, w in enumerate(works):
        assert torch.equal(w.out, torch.full((3, 2), 2.0 * i)) and w.sizes == [8, 8, 8]
    assert set(net.sizes) == {8} and len(net.sizes) <= 3  # 12 rows in micro-batches of 8, never 4 forwards


def test_fast_mode_sizes_micro_batches_to_the_rows_waiting_and_records_them():
    assert [bucket(n, 16) for n in (1, 2, 3, 5, 9, 16, 40)] == [1, 2, 4, 8, 16, 16, 16]
    net = Recorder()
    s = ModelScheduler(ComputeLoop(), "fake", net, 16, FAST)
    w = s.run(Work((torch.ones(3, 2),)))
    assert net.sizes == [4] and w.sizes == [4, 4, 4]
    forced = s.run(Work((torch.ones(1, 2),), size=4))
    assert net.sizes[-1] == 4 and forced.sizes == [4]


def test_a_small_call_is_not_starved_behind_a_large_one():
    net = Recorder(delay=0.01)
    s = ModelScheduler(ComputeLoop(), "fake", net, 4, EXACT)
    big, small = Work((torch.ones(400, 1),)), Work((torch.ones(4, 1),))
    done = {}
    tb = threading.Thread(target=lambda: (s.run(big), done.setdefault("big", time.monotonic())))
    tb.start()
    time.sleep(0.05)
    s.run(small)
    done["small"] = time.monotonic()
    tb.join()
    assert done["small"] < done["big"]
    assert len(net.sizes) >= 100  # the big call kept running beside it


def test_a_cancelled_call_leaves_the_queue_at_once():
    net = Recorder(delay=0.05)
    s = ModelScheduler(ComputeLoop(), "fake", net, 2, EXACT)
    alive = [True]
    w = Work((torch.ones(200, 1),), is_active=lambda: alive[0])
    err = []
    t = threading.Thread(target=lambda: err.append(pytest.raises(Cancelled, s.run, w)))
    t.start()
    time.sleep(0.2)
    alive[0] = False
    t.join(timeout=2)
    assert not t.is_alive() and s.queued_rows_locked() == 0 and len(net.sizes) < 20


def test_guided_pairs_never_split_across_micro_batches():
    seen = []
    s = ModelScheduler(ComputeLoop(), "fake", lambda x: (seen.append(x.clone()), x)[1], 4, EXACT)
    x = torch.arange(10.0).view(10, 1)  # 5 pairs (2k, 2k + 1)
    out = s.run(Work((x,), unit=2)).out
    assert torch.equal(out, x)
    for batch in seen:
        rows = batch.flatten().tolist()
        for a, b in zip(rows[0::2], rows[1::2]):
            assert b == a + 1 or a == b  # a pair, or padding


# ---------- the measurement the exact mode rests on (this CPU; fp32) ----------

@pytest.mark.skipif(TEST_DEVICE != "cpu", reason="measured on the CPU; the device check covers CUDA")
def test_a_network_row_depends_on_neither_its_position_nor_its_neighbours(engine):
    net = engine.models[M].net
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(32, 1, 32, 32, generator=g), torch.rand(32, generator=g), torch.randint(0, 11, (32,), generator=g)
    with torch.inference_mode():
        ref = net(x, t, y)
        perm = torch.randperm(32, generator=g)
        assert torch.equal(net(x[perm], t[perm], y[perm]), ref[perm])
        other = x.clone()
        other[16:] = torch.randn(16, 1, 32, 32, generator=g)
        assert torch.equal(net(other, t, y)[:16], ref[:16])


# ---------- over gRPC: alone vs under load ----------

def _random_request(stub, ns, seed):
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 6, (1,), generator=gen))
    seeds = torch.randint(0, 2**31, (n,), generator=gen).tolist()
    h = [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(namespace=ns, model=M, seeds=seeds)).tensors]
    solver = [pb.SOLVER_EULER, pb.SOLVER_HEUN][int(torch.randint(0, 2, (1,), generator=gen))]
    g = [1.0, 1.5, 0.0, 3.0][int(torch.randint(0, 4, (1,), generator=gen))]
    stub.Denoise(pb.DenoiseRequest(namespace=ns, model=M, handles=h, conditions=[label(seed % 10)],
                                   solver=pb.SolverSettings(solver=solver, steps=3, guidance_scale=g),
                                   sigma_from=1.0, sigma_to=0.0, capture_sigmas=[0.4]))


def _probe(stub, ns):
    h = [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(namespace=ns, model=M, seeds=[5, 6, 7])).tensors]
    r = stub.Denoise(pb.DenoiseRequest(namespace=ns, model=M, handles=h, conditions=[label(3)], sigma_from=1.0,
                                       sigma_to=0.0, solver=pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=4, guidance_scale=1.5),
                                       capture_sigmas=[0.4]))
    handles = [t.handle for t in r.tensors] + [t.handle for t in r.captures[0].tensors]
    raw = [t.raw_data for t in stub.Fetch(pb.FetchRequest(namespace=ns, handles=handles)).tensors]
    png = list(stub.Decode(pb.DecodeRequest(namespace=ns, model=M, handles=handles[:3])).png)
    scores = stub.Score(pb.ScoreRequest(namespace=ns, model=M, handles=handles[:3], conditions=[label(3)],
                                        verifiers=["classifier-logit", "feature-cosine"],
                                        x_prediction_handles=handles[3:])).results
    return raw, png, [list(s.scores) for s in scores], r


def _alone_and_under_load(stub):
    alone = _probe(stub, "probe-alone")
    stop = threading.Event()
    errors = []

    def load(i):
        k = 0
        while not stop.is_set():
            try:
                _random_request(stub, f"load-{i}", 1000 * i + k)
            except grpc.RpcError as e:  # pragma: no cover - reported below
                errors.append(e)
                return
            k += 1
    threads = [threading.Thread(target=load, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    try:
        loaded = _probe(stub, "probe-loaded")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    return alone, loaded


def test_a_request_alone_and_beside_seven_random_requests_gives_the_same_bytes(stub, engine):
    forwards = engine.compute.velocity[M].forwards
    alone, loaded = _alone_and_under_load(stub)
    assert alone[0] == loaded[0] and alone[1] == loaded[1] and alone[2] == loaded[2]
    assert engine.compute.velocity[M].forwards > forwards
    rec = alone[3].tensors[0].recipe.denoise
    assert rec.batching.reproducibility == pb.REPRODUCIBILITY_EXACT and list(rec.batching.rows) == [engine.models[M].micro_batch]


@pytest.fixture(scope="module")
def fast_stub():
    engine = build_engine(WorkerConfig(device=TEST_DEVICE, reproducibility="fast"))
    server, port, _ = make_server(engine, "127.0.0.1:0", 64 * 1024 * 1024)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    from noisesearch.worker.v1 import worker_pb2_grpc as rpc
    yield rpc.WorkerStub(channel)
    channel.close()
    server.stop(0).wait()


def test_fast_mode_records_its_micro_batch_sizes_and_replays_bit_identically(fast_stub):
    stub = fast_stub
    assert stub.Describe(pb.DescribeRequest()).reproducibility == pb.REPRODUCIBILITY_FAST
    _, loaded = _alone_and_under_load(stub)
    raw, r = loaded[0], loaded[3]
    recipes = [t.recipe for t in r.tensors] + [t.recipe for t in r.captures[0].tensors]
    d = recipes[0].denoise
    assert d.batching.reproducibility == pb.REPRODUCIBILITY_FAST and len(d.batching.rows) == 7  # Heun 4 to 0: 7 evaluations
    again = stub.Materialize(pb.MaterializeRequest(namespace="replay", recipes=recipes)).tensors
    assert [t.raw_data for t in stub.Fetch(pb.FetchRequest(namespace="replay", handles=[t.handle for t in again])).tensors] == raw


# ---------- guidance 0, non-finite outputs ----------

def test_guidance_zero_runs_only_the_unconditional_pass_and_charges_one_nfe(stub):
    h = [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=[8])).tensors]
    euler = lambda g: pb.SolverSettings(solver=pb.SOLVER_EULER, steps=3, guidance_scale=g)  # noqa: E731
    zero = stub.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[label(4)], solver=euler(0.0), sigma_from=1, sigma_to=0))
    uncond = stub.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[pb.Condition(unconditional=True)],
                                            solver=euler(1.0), sigma_from=1, sigma_to=0))
    assert zero.nfes_per_sample == 3 and uncond.nfes_per_sample == 3
    a, b = stub.Fetch(pb.FetchRequest(handles=[zero.tensors[0].handle, uncond.tensors[0].handle])).tensors
    assert a.raw_data == b.raw_data


def test_a_non_finite_network_output_is_an_error_naming_the_evaluation(stub):
    h = [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=[9])).tensors]
    with pytest.raises(grpc.RpcError) as e:
        stub.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[label(1)], sigma_from=1, sigma_to=0,
                                       solver=pb.SolverSettings(solver=pb.SOLVER_EULER, steps=3, guidance_scale=1e38)))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert re.match(r"model sit-fmnist, evaluation \d+ \(sigma [0-9.]+\) gave non-finite values", e.value.details())

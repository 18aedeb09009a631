"""The worker over real gRPC: the contract, determinism, errors that name their field, limits, cancellation."""
import math
import threading
import time

import grpc
import pytest

from conftest import TEST_DEVICE, label
from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch_worker.config import WorkerConfig, build_engine
from noisesearch_worker.server import make_server

M = "sit-fmnist"
EULER4 = pb.SolverSettings(solver=pb.SOLVER_EULER, steps=4, guidance_scale=1.0)


def noises(stub, seeds, ns=""):
    return [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(namespace=ns, model=M, seeds=seeds)).tensors]


def denoise(stub, handles, cls=7, solver=EULER4, **kw):
    return stub.Denoise(pb.DenoiseRequest(model=M, handles=handles, conditions=[label(cls)], solver=solver,
                                          sigma_from=1.0, sigma_to=0.0, **kw))


def fetch(stub, handles):
    return [t.raw_data for t in stub.Fetch(pb.FetchRequest(handles=handles)).tensors]


def test_describe_lists_the_default_model_and_its_three_verifiers(stub):
    d = stub.Describe(pb.DescribeRequest())
    assert [m.name for m in d.models] == [M]
    assert list(d.models[0].sample_shape) == [1, 32, 32] and d.models[0].num_classes == 10
    verifiers = {v.name: v for v in d.verifiers}
    assert set(verifiers) == {"classifier-logit", "feature-cosine", "evaluator-logprob"}
    assert verifiers["evaluator-logprob"].held_out and not verifiers["classifier-logit"].held_out
    assert verifiers["feature-cosine"].needs_x_prediction_at == pytest.approx(0.4)
    assert d.device.startswith(TEST_DEVICE) and d.max_batch > 0 and d.versions["proto"] == "noisesearch.worker.v1"


def test_full_pipeline_is_bit_identical_twice_and_independent_of_the_batch(stub):
    pngs = []
    for seeds in ([11, 12, 13, 14, 15], [13]):
        r = denoise(stub, noises(stub, seeds), solver=pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=5, guidance_scale=1.0))
        assert r.nfes_per_sample == 9 and r.nfes == 9 * len(seeds)
        pngs.append(stub.Decode(pb.DecodeRequest(model=M, handles=[t.handle for t in r.tensors])).png)
    assert pngs[0][2] == pngs[1][0]
    again = denoise(stub, noises(stub, [11]), solver=pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=5, guidance_scale=1.0))
    assert stub.Decode(pb.DecodeRequest(model=M, handles=[again.tensors[0].handle])).png[0] == pngs[0][0]
    assert pngs[0][0].startswith(b"\x89PNG")


def test_guidance_doubles_the_nfes_and_captures_have_recipes_that_rebuild_them(stub):
    r = denoise(stub, noises(stub, [1, 2]), solver=pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=10, guidance_scale=2.0),
                capture_sigmas=[0.4, 0.93])
    assert r.nfes_per_sample == 2 * 19
    assert [c.sigma for c in r.captures] == [pytest.approx(0.4), pytest.approx(0.9)]
    rebuilt = stub.Materialize(pb.MaterializeRequest(recipes=[r.tensors[1].recipe, r.captures[0].tensors[1].recipe]))
    assert fetch(stub, [r.tensors[1].handle, r.captures[0].tensors[1].handle]) == fetch(stub, [t.handle for t in rebuilt.tensors])


def test_zero_order_neighbours_forward_noise_and_x_prediction_over_the_wire(stub):
    import numpy as np
    pivot = noises(stub, [3])[0]
    nb = stub.ZeroOrderNeighbours(pb.ZeroOrderNeighboursRequest(pivot=pivot, tau=0.95, seeds=[1, 2, 3]))
    p = np.frombuffer(fetch(stub, [pivot])[0], dtype="<f4").astype(np.float64)
    for raw in fetch(stub, [t.handle for t in nb.tensors]):
        y = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        assert abs(y @ p / np.linalg.norm(y) / np.linalg.norm(p) - 0.95) < 1e-5
        assert abs(np.linalg.norm(y) / np.linalg.norm(p) - 1) < 1e-6
    part = stub.Denoise(pb.DenoiseRequest(model=M, handles=[pivot, pivot], conditions=[label(1)], solver=EULER4,
                                          sigma_from=1.0, sigma_to=0.5))
    assert part.nfes_per_sample == 4
    up = stub.ForwardNoise(pb.ForwardNoiseRequest(handles=[t.handle for t in part.tensors], sigma_from=0.5, sigma_to=0.6,
                                                  seeds=[7, 8]))
    assert up.tensors[0].recipe.forward_noise.parent.denoise.parent.seed.seed == 3
    xp = stub.XPrediction(pb.XPredictionRequest(model=M, handles=[t.handle for t in up.tensors], conditions=[label(1)],
                                                guidance_scale=1.0, sigma=0.6))
    assert xp.nfes == 2 and xp.nfes_per_sample == 1
    rebuilt = stub.Materialize(pb.MaterializeRequest(recipes=[xp.tensors[1].recipe, nb.tensors[2].recipe]))
    assert fetch(stub, [xp.tensors[1].handle, nb.tensors[2].handle]) == fetch(stub, [t.handle for t in rebuilt.tensors])


def test_scores_come_back_per_verifier_in_input_order(stub):
    r = denoise(stub, noises(stub, [21, 22, 23]), capture_sigmas=[0.4])
    out = [t.handle for t in r.tensors]
    xp = [t.handle for t in r.captures[0].tensors]
    verifiers = ["classifier-logit", "feature-cosine", "evaluator-logprob"]
    s = stub.Score(pb.ScoreRequest(model=M, handles=out, verifiers=verifiers, conditions=[label(7)], x_prediction_handles=xp))
    assert [v.verifier for v in s.results] == verifiers and s.verifier_calls == 9
    rev = stub.Score(pb.ScoreRequest(model=M, handles=out[::-1], verifiers=verifiers, conditions=[label(7)],
                                     x_prediction_handles=xp[::-1]))
    for a, b in zip(s.results, rev.results):
        assert list(a.scores) == list(b.scores)[::-1]
    assert all(-1.0 <= c <= 1.0 for c in s.results[1].scores)
    assert all(v <= 0 for v in s.results[2].scores)  # log-probabilities


def test_put_fetch_release_round_trip_and_put_recipes_are_not_rebuildable(stub):
    import numpy as np
    arr = np.arange(1024, dtype="<f4").reshape(1, 32, 32) / 1024
    t = stub.Put(pb.PutRequest(tensors=[pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1, 32, 32], raw_data=arr.tobytes())])).tensors[0]
    assert fetch(stub, [t.handle])[0] == arr.tobytes()
    with pytest.raises(grpc.RpcError) as e:
        stub.Materialize(pb.MaterializeRequest(recipes=[t.recipe]))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stub.Release(pb.ReleaseRequest(handles=[t.handle, "nope"])).released == 1
    with pytest.raises(grpc.RpcError) as e:
        fetch(stub, [t.handle])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "handles[0]" in e.value.details()


def test_namespaces_are_separate(stub):
    h = noises(stub, [1], ns="alice")[0]
    with pytest.raises(grpc.RpcError) as e:
        stub.Fetch(pb.FetchRequest(namespace="bob", handles=[h]))
    assert "unknown handle" in e.value.details()
    assert stub.Release(pb.ReleaseRequest(namespace="alice", all=True)).released >= 1


def nan_tensor():
    import numpy as np
    arr = np.zeros((1, 32, 32), dtype="<f4")
    arr[0, 0, 0] = np.nan
    return pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1, 32, 32], raw_data=arr.tobytes())


BAD = [
    ("unknown model", lambda s, h: s.Denoise(pb.DenoiseRequest(model="sit-xxl", handles=h, conditions=[label(1)],
                                                               sigma_from=1, sigma_to=0)), "model"),
    ("unknown verifier", lambda s, h: s.Score(pb.ScoreRequest(model=M, handles=h, verifiers=["classifier-logit", "oracle"],
                                                              conditions=[label(1)])), "verifiers[1]"),
    ("unknown handle", lambda s, h: s.Denoise(pb.DenoiseRequest(model=M, handles=[h[0], "dead"], conditions=[label(1)],
                                                                sigma_from=1, sigma_to=0)), "handles[1]"),
    ("sigma above 1", lambda s, h: s.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[label(1)],
                                                               sigma_from=1.5, sigma_to=0)), "sigma_from"),
    ("sigma_b >= sigma_a", lambda s, h: s.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[label(1)],
                                                                    sigma_from=0.3, sigma_to=0.3)), "sigma_to"),
    ("NaN sigma", lambda s, h: s.ForwardNoise(pb.ForwardNoiseRequest(handles=h, sigma_from=math.nan, sigma_to=0.5,
                                                                     seeds=[1])), "sigma_from"),
    ("NaN guidance", lambda s, h: s.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[label(1)], sigma_from=1,
                                                              sigma_to=0, solver=pb.SolverSettings(guidance_scale=math.nan))),
     "solver.guidance_scale"),
    ("NaN tensor", lambda s, h: s.Put(pb.PutRequest(tensors=[nan_tensor()])), "tensors[0].raw_data"),
    ("wrong byte count", lambda s, h: s.Put(pb.PutRequest(tensors=[pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2, 2],
                                                                             raw_data=b"\0" * 12)])), "tensors[0].raw_data"),
    ("wrong shape", lambda s, h: s.Denoise(pb.DenoiseRequest(
        model=M, handles=[s.Put(pb.PutRequest(tensors=[pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1, 8, 8],
                                                                 raw_data=b"\0" * 256)])).tensors[0].handle],
        conditions=[label(1)], sigma_from=1, sigma_to=0)), "handles"),
    ("label out of range", lambda s, h: s.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[label(10)],
                                                                    sigma_from=1, sigma_to=0)), "conditions[0].class_label"),
    ("prompt for a class model", lambda s, h: s.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[pb.Condition(prompt="a cat")],
                                                                          sigma_from=1, sigma_to=0)), "conditions[0].prompt"),
    ("missing condition", lambda s, h: s.Denoise(pb.DenoiseRequest(model=M, handles=h, sigma_from=1, sigma_to=0)), "conditions"),
    ("tau out of range", lambda s, h: s.ZeroOrderNeighbours(pb.ZeroOrderNeighboursRequest(pivot=h[0], tau=1.5, seeds=[1])), "tau"),
    ("self-supervised without x-predictions", lambda s, h: s.Score(pb.ScoreRequest(model=M, handles=h,
                                                                                   verifiers=["feature-cosine"])), "x_prediction_handles"),
    ("empty batch", lambda s, h: s.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=[])), "seeds"),
    ("batch over the limit", lambda s, h: s.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=list(range(5000)))), "seeds"),
    ("seeds count mismatch", lambda s, h: s.ForwardNoise(pb.ForwardNoiseRequest(handles=h, sigma_from=0.1, sigma_to=0.5,
                                                                                seeds=[1, 2])), "seeds"),
]


@pytest.mark.parametrize("name,call,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_invalid_argument_naming_the_field(stub, name, call, field):
    h = noises(stub, [5])
    with pytest.raises(grpc.RpcError) as e:
        call(stub, h)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert e.value.details().startswith(field + ":"), e.value.details()


def test_memory_cap_answers_resource_exhausted_and_keeps_serving():
    engine = build_engine(WorkerConfig(device=TEST_DEVICE, memory_cap_mb=1))  # 1 MiB = 256 samples of 4 KiB
    server, port, _ = make_server(engine, "127.0.0.1:0", 64 * 1024 * 1024)
    server.start()
    try:
        from noisesearch.worker.v1 import worker_pb2_grpc as rpc
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = rpc.WorkerStub(channel)
        stub.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=list(range(200))))
        with pytest.raises(grpc.RpcError) as e:
            stub.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=list(range(100))))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "cap" in e.value.details()
        stub.Release(pb.ReleaseRequest(all=True))
        assert len(stub.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=list(range(100)))).tensors) == 100
        channel.close()
    finally:
        server.stop(0).wait()


def test_a_cancelled_denoise_stops_the_work(stub, engine):
    h = noises(stub, list(range(64)))
    slow = pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=200, guidance_scale=3.0)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        stub.Denoise(pb.DenoiseRequest(model=M, handles=h, conditions=[label(2)], solver=slow, sigma_from=1, sigma_to=0),
                     timeout=1.0)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The worker noticed and its rows left the schedulers' queues, instead of finishing ~800 forward passes.
    while engine.compute.queued_rows and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert engine.compute.queued_rows == 0, "the cancelled denoise kept the worker busy"
    assert time.monotonic() - t0 < 12


def test_health_is_serving():
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    engine = build_engine(WorkerConfig(device=TEST_DEVICE))
    server, port, health_servicer = make_server(engine, "127.0.0.1:0", 1 << 20)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            h = health_pb2_grpc.HealthStub(channel)
            assert h.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(0).wait()


def test_a_namespace_released_during_a_call_is_not_refilled_by_it(stub):
    """A job's clean-up (Release all) can race its cancelled in-flight Denoise: the late outputs are dropped."""
    ns = "race"
    h = noises(stub, list(range(32)), ns=ns)
    slow = pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=20, guidance_scale=2.0)
    future = stub.Denoise.future(pb.DenoiseRequest(namespace=ns, model=M, handles=h, conditions=[label(4)], solver=slow,
                                                   sigma_from=1, sigma_to=0))
    time.sleep(0.3)  # the denoise is computing
    stub.Release(pb.ReleaseRequest(namespace=ns, all=True))
    with pytest.raises(grpc.RpcError) as e:
        future.result(timeout=120)
    assert e.value.code() == grpc.StatusCode.ABORTED and "released while this call ran" in e.value.details()
    assert stub.Release(pb.ReleaseRequest(namespace=ns, all=True)).released == 0
    assert len(noises(stub, [1], ns=ns)) == 1  # the namespace is usable again

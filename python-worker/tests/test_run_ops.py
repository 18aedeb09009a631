"""Worker.Run: a search step's dependent calls in one round trip give the same tensors, recipes,
NFEs and scores as the separate RPCs."""
import grpc
import pytest

from conftest import label, pb

EULER4 = pb.SolverSettings(solver=pb.SOLVER_EULER, steps=4, guidance_scale=1.0)


def fetch(stub, ns, handles):
    return [t.raw_data for t in stub.Fetch(pb.FetchRequest(namespace=ns, handles=handles)).tensors]


def test_noises_denoise_score_in_one_call_equal_the_separate_calls(stub):
    seeds = [11, 12, 13]
    # Separately.
    ns = "run-separate"
    n = stub.InitialNoises(pb.InitialNoisesRequest(namespace=ns, model="sit-fmnist", seeds=seeds))
    d = stub.Denoise(pb.DenoiseRequest(namespace=ns, model="sit-fmnist", handles=[t.handle for t in n.tensors],
                                       conditions=[label(7)], solver=EULER4, sigma_from=1, sigma_to=0, capture_sigmas=[0.4]))
    s = stub.Score(pb.ScoreRequest(namespace=ns, model="sit-fmnist", handles=[t.handle for t in d.tensors],
                                   verifiers=["classifier-logit"], conditions=[label(7)]))
    # In one Run call, later ops naming earlier outputs.
    ns2 = "run-fused"
    r = stub.Run(pb.RunRequest(ops=[
        pb.RunOp(initial_noises=pb.InitialNoisesRequest(namespace=ns2, model="sit-fmnist", seeds=seeds)),
        pb.RunOp(denoise=pb.DenoiseRequest(namespace=ns2, model="sit-fmnist", handles=["@0.0", "@0.1", "@0.2"], conditions=[label(7)],
                                           solver=EULER4, sigma_from=1, sigma_to=0, capture_sigmas=[0.4], release_inputs=True)),
        pb.RunOp(score=pb.ScoreRequest(namespace=ns2, model="sit-fmnist", handles=["@1.0", "@1.1", "@1.2"],
                                       verifiers=["classifier-logit"], conditions=[label(7)])),
        pb.RunOp(forward_noise=pb.ForwardNoiseRequest(namespace=ns2, handles=["@1.c0.0"], sigma_from=0.4, sigma_to=0.5, seeds=[1])),
    ]))
    assert [x.WhichOneof("result") for x in r.results] == ["tensors", "denoise", "score", "tensors"]
    fd = r.results[1].denoise
    assert fd.nfes == d.nfes == 12
    assert [t.recipe for t in fd.tensors] == [t.recipe for t in d.tensors]
    assert fetch(stub, ns2, [t.handle for t in fd.tensors]) == fetch(stub, ns, [t.handle for t in d.tensors])
    assert [t.recipe for t in fd.captures[0].tensors] == [t.recipe for t in d.captures[0].tensors]
    assert list(r.results[2].score.results[0].scores) == list(s.results[0].scores)
    assert r.results[2].score.verifier_calls == 3
    # release_inputs freed the noises made inside the call.
    with pytest.raises(grpc.RpcError) as e:
        stub.Fetch(pb.FetchRequest(namespace=ns2, handles=[t.handle for t in r.results[0].tensors.tensors]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for space in (ns, ns2):
        stub.Release(pb.ReleaseRequest(namespace=space, all=True))


@pytest.mark.parametrize("handle", ["@1.0", "@0.9", "@x", "@0.c0.0"])
def test_a_reference_to_no_earlier_output_is_invalid_argument(stub, handle):
    with pytest.raises(grpc.RpcError) as e:
        stub.Run(pb.RunRequest(ops=[
            pb.RunOp(initial_noises=pb.InitialNoisesRequest(namespace="run-bad", model="sit-fmnist", seeds=[1])),
            pb.RunOp(forward_noise=pb.ForwardNoiseRequest(namespace="run-bad", handles=[handle], sigma_from=0.1, sigma_to=0.2, seeds=[1])),
        ]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "handles" in e.value.details()
    stub.Release(pb.ReleaseRequest(namespace="run-bad", all=True))


def test_an_empty_op_is_invalid_argument(stub):
    with pytest.raises(grpc.RpcError) as e:
        stub.Run(pb.RunRequest(ops=[pb.RunOp()]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_release_and_decode_ride_along(stub):
    ns = "run-release"
    n = stub.InitialNoises(pb.InitialNoisesRequest(namespace=ns, model="sit-fmnist", seeds=[5, 6]))
    d = stub.Denoise(pb.DenoiseRequest(namespace=ns, model="sit-fmnist", handles=[t.handle for t in n.tensors], conditions=[label(3)],
                                       solver=EULER4, sigma_from=1, sigma_to=0))
    png = stub.Decode(pb.DecodeRequest(namespace=ns, model="sit-fmnist", handles=[d.tensors[0].handle])).png[0]
    r = stub.Run(pb.RunRequest(ops=[
        pb.RunOp(decode=pb.DecodeRequest(namespace=ns, model="sit-fmnist", handles=[d.tensors[0].handle])),
        pb.RunOp(release=pb.ReleaseRequest(namespace=ns, handles=[t.handle for t in n.tensors] + [d.tensors[1].handle])),
    ]))
    assert r.results[0].decode.png[0] == png
    assert r.results[1].release.released == 3
    with pytest.raises(grpc.RpcError):
        stub.Run(pb.RunRequest(ops=[pb.RunOp(release=pb.ReleaseRequest(namespace=ns, all=True))]))
    stub.Release(pb.ReleaseRequest(namespace=ns, all=True))

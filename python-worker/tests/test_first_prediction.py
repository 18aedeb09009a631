"""DenoiseRequest.first_predictions: a segment's first step reuses the x-prediction that judged its input (issue 10, part 2)."""
import grpc
import pytest
import torch

from conftest import label
from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch_worker import validation as check
from noisesearch_worker.sampling import particle_noise_sampler, sample_ddim_eta, sample_euler, sample_heun

M = "sit-fmnist"
EULER = pb.SolverSettings(solver=pb.SOLVER_EULER, steps=6, guidance_scale=1.5)
HEUN = pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=6, guidance_scale=1.5)
SDE = pb.SolverSettings(solver=pb.SOLVER_DDIM_ETA, steps=6, guidance_scale=1.5, eta=1.0, noise_seed=91)


def _noises(stub, seeds):
    return [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=seeds)).tensors]


def _fetch(stub, handles):
    return [torch.frombuffer(bytearray(t.raw_data), dtype=torch.float32).reshape(list(t.shape))
            for t in stub.Fetch(pb.FetchRequest(handles=handles)).tensors]


def _bytes(stub, handles):
    return [t.raw_data for t in stub.Fetch(pb.FetchRequest(handles=handles)).tensors]


def _xpred(stub, handles, sigma, guidance=1.5, cls=3):
    return stub.XPrediction(pb.XPredictionRequest(model=M, handles=handles, conditions=[label(cls)], sigma=sigma,
                                                  guidance_scale=guidance))


def _solve(stub, handles, solver, a, b, **kw):
    return stub.Denoise(pb.DenoiseRequest(model=M, handles=handles, conditions=[label(3)], solver=solver,
                                          sigma_from=a, sigma_to=b, **kw))


@pytest.mark.parametrize("solver,sampler", [(EULER, sample_euler), (HEUN, sample_heun), (SDE, sample_ddim_eta)])
def test_the_first_step_takes_its_evaluation_from_the_given_x_prediction(stub, engine, solver, sampler):
    """One evaluation fewer per sample; the result is the sampler run with d = (x - x_hat) / sigma at its first step,
    within float noise of the plain solve, and its recipe rebuilds it bit for bit."""
    a, b = 0.7, 0.2
    h = _solve(stub, _noises(stub, [5, 6]), EULER, 1.0, a)
    starts = [t.handle for t in h.tensors]
    xs = _xpred(stub, starts, a)
    assert xs.nfes == 2 * 2  # guided: two rows per sample
    plain = _solve(stub, starts, solver, a, b)
    reused = _solve(stub, starts, solver, a, b, first_predictions=[t.handle for t in xs.tensors])
    assert reused.nfes_per_sample == plain.nfes_per_sample - 2 and reused.nfes == 2 * reused.nfes_per_sample
    assert all(t.recipe.denoise.HasField("first_prediction") for t in reused.tensors)
    assert not any(t.recipe.denoise.HasField("first_prediction") for t in plain.tensors)
    got = torch.stack(_fetch(stub, [t.handle for t in reused.tensors]))
    assert torch.allclose(got, torch.stack(_fetch(stub, [t.handle for t in plain.tensors])), atol=1e-4)
    # The same sampler, driven by hand: the given x-prediction at the first step, the network after.
    model = engine.models[M]
    x, x_hat = torch.stack(_fetch(stub, starts)), torch.stack(_fetch(stub, [t.handle for t in xs.tensors]))
    values, _ = check.conditions(model, [label(3)], 2)
    network = engine.compute.velocity_fn(model, values, 1.5)
    sigmas = model.sigmas(a, b, solver.steps)
    calls = []

    def net(z, s):
        calls.append(s)
        return (x - x_hat) / s if len(calls) == 1 else network(z, s)
    opts = {"eta": 1.0, "noise_sampler": particle_noise_sampler(91, [0, 1], model.sample_shape)} if sampler is sample_ddim_eta else {}
    by_hand = sampler(net, x.clone(), sigmas, **opts)
    assert torch.equal(got, by_hand.float())
    rebuilt = stub.Materialize(pb.MaterializeRequest(recipes=[t.recipe for t in reused.tensors]))
    assert _bytes(stub, [t.handle for t in rebuilt.tensors]) == _bytes(stub, [t.handle for t in reused.tensors])


def test_proposals_of_one_particle_share_its_x_prediction_and_cost_nothing(stub):
    """Rollover budget forcing's proposal: one stochastic step from a particle whose x-prediction was paid for: 0 NFEs;
    the proposals differ by their noise, replay bit-identically, and do not depend on the batch they ran in."""
    a, b = 0.6, 0.5
    x = _solve(stub, _noises(stub, [8]), EULER, 1.0, a).tensors[0].handle
    xp = _xpred(stub, [x], a).tensors[0].handle
    step = pb.SolverSettings(solver=pb.SOLVER_DDIM_ETA, steps=1, guidance_scale=1.5, eta=1.0, noise_seed=4)
    r = _solve(stub, [x, x, x], step, a, b, first_predictions=[xp, xp, xp])
    assert r.nfes == 0 and r.nfes_per_sample == 0
    out = _bytes(stub, [t.handle for t in r.tensors])
    assert len(set(out)) == 3
    assert _bytes(stub, [_solve(stub, [x], step, a, b, first_predictions=[xp]).tensors[0].handle]) == out[:1]
    rebuilt = stub.Materialize(pb.MaterializeRequest(recipes=[t.recipe for t in r.tensors]))
    assert _bytes(stub, [t.handle for t in rebuilt.tensors]) == out
    # A chain of such steps (each judged by its x-prediction, the next step reusing it) replays from its recipe.
    nxt_x = _xpred(stub, [r.tensors[1].handle], b).tensors[0].handle
    nxt = _solve(stub, [r.tensors[1].handle], step, b, 0.4, first_predictions=[nxt_x])
    again = stub.Materialize(pb.MaterializeRequest(recipes=[nxt.tensors[0].recipe]))
    assert _bytes(stub, [again.tensors[0].handle]) == _bytes(stub, [nxt.tensors[0].handle])


def test_inside_one_run_call_a_denoise_takes_an_earlier_ops_x_predictions(stub):
    x = _solve(stub, _noises(stub, [12, 13]), EULER, 1.0, 0.5).tensors
    hs = [t.handle for t in x]
    res = stub.Run(pb.RunRequest(ops=[
        pb.RunOp(x_prediction=pb.XPredictionRequest(model=M, handles=hs, conditions=[label(3)], sigma=0.5, guidance_scale=1.5)),
        pb.RunOp(denoise=pb.DenoiseRequest(model=M, handles=hs, conditions=[label(3)], solver=EULER, sigma_from=0.5,
                                           sigma_to=0.0, first_predictions=["@0.0", "@0.1"])),
    ]))
    alone = _solve(stub, hs, EULER, 0.5, 0.0, first_predictions=[t.handle for t in _xpred(stub, hs, 0.5).tensors])
    assert res.results[1].denoise.nfes == alone.nfes == 2 * 5 * 2  # 6 steps - 1, guided, 2 samples
    assert _bytes(stub, [t.handle for t in res.results[1].denoise.tensors]) == _bytes(stub, [t.handle for t in alone.tensors])


def _refused(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return e.value.details()


def test_an_x_prediction_that_is_not_the_inputs_at_sigma_from_is_refused_by_field(stub):
    x = [t.handle for t in _solve(stub, _noises(stub, [30, 31]), EULER, 1.0, 0.5).tensors]
    good = [t.handle for t in _xpred(stub, x, 0.5).tensors]
    solve = lambda fp, **kw: _solve(stub, x, EULER, 0.5, 0.0, first_predictions=fp, **kw)  # noqa: E731
    assert "first_predictions" in _refused(lambda: solve(good[:1]))
    assert "first_predictions[1]" in _refused(lambda: solve([good[0], good[0]]))  # another input's
    assert "first_predictions[0]" in _refused(lambda: solve([x[0], good[1]]))  # not an x-prediction
    assert "first_predictions[0]" in _refused(lambda: solve([_xpred(stub, x[:1], 0.6).tensors[0].handle, good[1]]))
    assert "first_predictions[0]" in _refused(lambda: solve([_xpred(stub, x[:1], 0.5, guidance=1.0).tensors[0].handle, good[1]]))
    assert "first_predictions[0]" in _refused(lambda: solve([_xpred(stub, x[:1], 0.5, cls=4).tensors[0].handle, good[1]]))
    assert "capture_sigmas[0]" in _refused(lambda: solve(good, capture_sigmas=[0.5]))
    assert solve(good, capture_sigmas=[0.3]).captures[0].sigma == pytest.approx(1 / 3)  # a later level is fine

"""The stochastic re-noising solver (SOLVER_DDIM_ETA): marginals, eta = 0 is Euler, seeded and replayable."""
import math

import grpc
import pytest
import torch

from conftest import label
from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch_worker.sampling import (linear_sigmas, particle_noise_sampler, sample_ddim_eta, sample_euler,
                                         solver_nfes, step_noise)
from test_sampling import MU, S, gaussian_velocity

M = "sit-fmnist"
N = 50_000


def ddim(x, sigmas, eta, seed=0):
    return sample_ddim_eta(gaussian_velocity, x, sigmas, eta=eta, noise_sampler=particle_noise_sampler(seed, [0], x.shape[1:]))


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_the_stochastic_step_keeps_the_marginals_of_the_path_at_first_order(eta):
    # Data N(MU, S^2) and the exact x-prediction: the sample at sigma = 0 must be N(MU, S^2) as the steps shrink.
    z = step_noise(99, 0, 0, (N,)).double().unsqueeze(0)
    var_errors = []
    for steps in (50, 100, 200):
        x = ddim(z.clone(), linear_sigmas(1.0, 0.0, steps), eta)
        assert abs(x.mean().item() - MU) < 6e-3, (eta, steps)  # 4.5 standard errors
        var_errors.append(abs(x.var().item() / S**2 - 1))
    assert var_errors[-1] < 0.06, var_errors
    rates = [var_errors[i] / var_errors[i + 1] for i in range(2)]
    assert all(1.4 < r < 2.6 for r in rates), (var_errors, rates)  # first order in the step size


def test_eta_one_forgets_the_starting_noise_and_eta_zero_keeps_it():
    z = step_noise(7, 0, 0, (N,)).double().unsqueeze(0)
    corr = lambda a, b: torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()  # noqa: E731
    assert corr(ddim(z.clone(), linear_sigmas(1.0, 0.0, 100), 0.0), z) > 0.99
    assert abs(corr(ddim(z.clone(), linear_sigmas(1.0, 0.0, 100), 1.0), z)) < 0.05


def test_eta_zero_is_euler_bit_for_bit():
    z = step_noise(3, 0, 0, (4096,)).unsqueeze(0)  # fp32, as the worker runs
    for end in (0.0, 0.35):
        sig = linear_sigmas(1.0, end, 13)
        assert torch.equal(ddim(z.clone(), sig, 0.0), sample_euler(gaussian_velocity, z.clone(), sig))
    assert solver_nfes("ddim_eta", sig) == 13


def test_noise_is_a_pure_function_of_seed_particle_and_step():
    a = step_noise(5, 2, 3, (1, 8, 8))
    assert torch.equal(a, step_noise(5, 2, 3, (1, 8, 8)))
    others = [step_noise(6, 2, 3, (1, 8, 8)), step_noise(5, 1, 3, (1, 8, 8)), step_noise(5, 2, 4, (1, 8, 8))]
    assert not any(torch.equal(a, o) for o in others)
    rows = particle_noise_sampler(5, [4, 2], (1, 8, 8))(3)
    assert torch.equal(rows[1], a) and rows.shape == (2, 1, 8, 8)


def _noises(stub, seeds):
    return [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(model=M, seeds=seeds)).tensors]


def _fetch(stub, handles):
    return [t.raw_data for t in stub.Fetch(pb.FetchRequest(handles=handles)).tensors]


def _solve(stub, handles, solver, a=1.0, b=0.0, **kw):
    return stub.Denoise(pb.DenoiseRequest(model=M, handles=handles, conditions=[label(3)], solver=solver,
                                          sigma_from=a, sigma_to=b, **kw))


def test_over_the_wire_particles_diverge_replay_bit_identically_and_do_not_depend_on_the_batch(stub):
    h = _noises(stub, [21, 22])
    sde = pb.SolverSettings(solver=pb.SOLVER_DDIM_ETA, steps=6, guidance_scale=1.0, eta=1.0, noise_seed=77)
    r = _solve(stub, [h[0], h[0], h[1]], sde, 1.0, 0.3, capture_sigmas=[0.5])
    assert r.nfes_per_sample == 6 and [t.recipe.denoise.particle for t in r.tensors] == [0, 1, 2]
    out = _fetch(stub, [t.handle for t in r.tensors])
    assert out[0] != out[1]  # one handle, two particles: resampling shares a handle, the noise tells them apart
    assert out == _fetch(stub, [t.handle for t in _solve(stub, [h[0], h[0], h[1]], sde, 1.0, 0.3).tensors])
    recipes = [t.recipe for t in r.tensors] + [r.captures[0].tensors[1].recipe]
    rebuilt = stub.Materialize(pb.MaterializeRequest(recipes=recipes))
    assert _fetch(stub, [t.handle for t in rebuilt.tensors]) == out + _fetch(stub, [r.captures[0].tensors[1].handle])
    # A chain: the next segment continues from the stochastic one and replays through it.
    nxt = _solve(stub, [r.tensors[2].handle], pb.SolverSettings(solver=pb.SOLVER_DDIM_ETA, steps=3, guidance_scale=1.0,
                                                                  eta=0.5, noise_seed=78), 0.3, 0.0)
    again = stub.Materialize(pb.MaterializeRequest(recipes=[nxt.tensors[0].recipe]))
    assert _fetch(stub, [nxt.tensors[0].handle]) == _fetch(stub, [again.tensors[0].handle])
    # eta = 0 over the wire is the Euler solver's bytes.
    zero = _solve(stub, h, pb.SolverSettings(solver=pb.SOLVER_DDIM_ETA, steps=5, guidance_scale=1.5, eta=0.0, noise_seed=1))
    euler = _solve(stub, h, pb.SolverSettings(solver=pb.SOLVER_EULER, steps=5, guidance_scale=1.5))
    assert _fetch(stub, [t.handle for t in zero.tensors]) == _fetch(stub, [t.handle for t in euler.tensors])


def test_a_bad_eta_names_its_field(stub):
    h = _noises(stub, [1])
    with pytest.raises(grpc.RpcError) as e:
        _solve(stub, h, pb.SolverSettings(solver=pb.SOLVER_DDIM_ETA, steps=2, eta=1.5))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "solver.eta" in e.value.details()
    with pytest.raises(grpc.RpcError):
        _solve(stub, h, pb.SolverSettings(solver=pb.SOLVER_DDIM_ETA, steps=2, eta=math.nan))

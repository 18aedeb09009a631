"""Samplers, kernels and noise recipes against cases with exact answers."""
import math

import pytest
import torch

from noisesearch_worker.sampling import (forward_noise, initial_noises, linear_sigmas, sample_euler, sample_heun,
                                         seeded_normal, solver_nfes, zero_order_neighbours)

MU, S = 0.7, 0.3  # data ~ N(MU, S^2) per coordinate


def gaussian_velocity(x, sigma):
    """Exact dx/dsigma of the probability-flow ODE when the data are N(MU, S^2): x_sigma = m + std * z along a path."""
    m = (1 - sigma) * MU
    std = math.sqrt((1 - sigma) ** 2 * S**2 + sigma**2)
    dstd = (-(1 - sigma) * S**2 + sigma) / std
    return -MU + dstd * (x - m) / std


def exact_endpoint(z):
    return MU + S * z  # the noise z at sigma = 1 flows to MU + S z


@pytest.mark.parametrize("sampler,order", [(sample_euler, 1), (sample_heun, 2)])
def test_solvers_converge_to_the_exact_ode_endpoint_at_their_order(sampler, order):
    z = seeded_normal(0, (4096,)).double()
    errors = []
    for steps in (10, 20, 40, 80):
        x = sampler(gaussian_velocity, z.clone(), linear_sigmas(1.0, 0.0, steps))
        errors.append((x - exact_endpoint(z)).abs().max().item())
    assert errors[-1] < (3e-2 if order == 1 else 1e-3)
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(3)]
    assert all(order - 0.1 < r < order + 0.2 for r in rates), rates


def test_nfe_counts_are_exact():
    calls = []

    def model(x, s):
        calls.append(s)
        return torch.zeros_like(x)

    for steps in (1, 5, 25):
        for solver, sampler in (("heun", sample_heun), ("euler", sample_euler)):
            for end in (0.0, 0.3):
                calls.clear()
                sig = linear_sigmas(1.0, end, steps)
                sampler(model, torch.zeros(2), sig)
                assert len(calls) == solver_nfes(solver, sig)
    assert solver_nfes("heun", linear_sigmas(1, 0, 25)) == 49  # 2S - 1
    assert solver_nfes("heun", linear_sigmas(1, 0.5, 25)) == 50  # no Euler tail above 0


def test_forward_kernel_gives_the_marginal_of_the_path():
    x0 = torch.full((200_000,), 0.8, dtype=torch.float64)
    eps = seeded_normal(1, (200_000,)).double()
    sa, sb = 0.3, 0.65
    xa = (1 - sa) * x0 + sa * eps
    xb = forward_noise(xa, sa, sb, seeded_normal(2, (200_000,)).double())
    assert abs(xb.mean().item() - (1 - sb) * 0.8) < 5e-3
    assert abs(xb.std().item() - sb) < 5e-3
    # The naive x + sqrt(sb^2 - sa^2) z would leave the mean at (1 - sa) * 0.8: the exact kernel does not.
    assert abs(xb.mean().item() - (1 - sa) * 0.8) > 0.2


def test_forward_kernel_rejects_downward_levels():
    with pytest.raises(ValueError):
        forward_noise(torch.zeros(3), 0.5, 0.4, torch.zeros(3))


def test_neighbours_have_cosine_tau_and_the_pivot_norm():
    pivot = seeded_normal(3, (1, 32, 32))
    for tau in (0.95, 0.5, 0.0):
        ys = zero_order_neighbours(pivot, tau, [10, 11, 12, 13])
        for y in ys:
            cos = torch.nn.functional.cosine_similarity(y.flatten().double(), pivot.flatten().double(), dim=0).item()
            assert abs(cos - tau) < 1e-5
            assert abs(y.norm().item() - pivot.norm().item()) / pivot.norm().item() < 1e-6
        assert not torch.equal(ys[0], ys[1])


def test_noise_is_a_pure_function_of_seed_and_shape():
    a = initial_noises([5, 6, 7], (1, 32, 32))
    b = initial_noises([7], (1, 32, 32))
    assert torch.equal(a[2], b[0])
    assert torch.equal(initial_noises([5], (1, 32, 32))[0], a[0])
    assert not torch.equal(a[0], a[1])
    big = seeded_normal(2**64 - 1, (4,))
    assert torch.isfinite(big).all() and not torch.equal(big, seeded_normal(2**63 - 1, (4,)))


def test_a_neighbour_seed_equal_to_the_pivot_seed_is_not_degenerate():
    pivot = seeded_normal(3, (1, 32, 32))
    y = zero_order_neighbours(pivot, 0.95, [3])[0]
    cos = torch.nn.functional.cosine_similarity(y.flatten().double(), pivot.flatten().double(), dim=0).item()
    assert abs(cos - 0.95) < 1e-5 and abs(y.norm().item() - pivot.norm().item()) < 1e-3

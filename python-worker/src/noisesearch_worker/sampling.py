"""Noise recipes, the forward kernel and ODE samplers in the project's sigma convention.

sigma in [0, 1], x_sigma = (1 - sigma) * x_data + sigma * eps (sigma = 1 is pure noise).
A `model(x, sigma)` here returns dx/dsigma = eps - x_data, so x_data_hat = x - sigma * dx/dsigma.
Samplers are flat functions over (model, x, sigmas), as k-diffusion writes them.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
# Called as callback(step, sigma, x_hat) at the first model evaluation of each step, i.e. at the
# solver's own state on the grid (never at Heun's intermediate Euler point).
XPredCallback = Callable[[int, float, torch.Tensor], None]


# Separate random streams per purpose, so a neighbour or forward-noise seed equal to a noise seed
# never reproduces that noise (a neighbour drawn along its own pivot would be degenerate).
NOISE_STREAM, NEIGHBOUR_STREAM, FORWARD_STREAM, STEP_STREAM = 0, 1, 2, 3


def seeded_normal(seed: int, shape: Sequence[int], stream: int = NOISE_STREAM) -> torch.Tensor:
    """N(0, I) in fp32 as a pure function of (seed, shape), drawn on the CPU so any device gets the same bits.

    NumPy's PCG64 takes the whole uint64 seed (torch's CPU generator keeps only 32 bits of it, so
    seeds 2^32 apart would collide), and its standard normal stream is fixed for a given seed.
    """
    if not 0 <= seed < 2**64:
        raise ValueError("seed must be in [0, 2^64)")
    rng = np.random.Generator(np.random.PCG64(seed if stream == NOISE_STREAM else [seed, stream]))
    return torch.from_numpy(rng.standard_normal(tuple(shape), dtype=np.float32))


def step_noise(seed: int, particle: int, step: int, shape: Sequence[int]) -> torch.Tensor:
    """The fresh noise of a stochastic solver: N(0, I) in fp32, a pure function of (seed, particle, step, shape)."""
    if not 0 <= seed < 2**64:
        raise ValueError("seed must be in [0, 2^64)")
    rng = np.random.Generator(np.random.PCG64([seed, STEP_STREAM, particle, step]))
    return torch.from_numpy(rng.standard_normal(tuple(shape), dtype=np.float32))


NoiseSampler = Callable[[int], torch.Tensor]  # step index on the solver's grid -> one noise per row of x


def particle_noise_sampler(seed: int, particles: Sequence[int], shape: Sequence[int]) -> NoiseSampler:
    """Row i of step j's noise is step_noise(seed, particles[i], j): independent of the batch a row is solved in."""
    return lambda step: torch.stack([step_noise(seed, p, step, shape) for p in particles])


def initial_noises(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """One noise per seed, stacked: sample i depends only on seeds[i], never on the batch."""
    return torch.stack([seeded_normal(s, shape) for s in seeds])


def zero_order_neighbours(pivot: torch.Tensor, tau: float, seeds: Sequence[int]) -> torch.Tensor:
    """Ma et al. 2025, zero-order search neighbourhood: y = |n| (tau u + sqrt(1 - tau^2) w), w a seeded unit vector _|_ u.

    Every neighbour has cosine tau with the pivot and exactly the pivot's norm.
    """
    if not -1.0 <= tau <= 1.0:
        raise ValueError("tau must be in [-1, 1]")
    n = pivot.detach().to("cpu", torch.float64).flatten()
    norm = n.norm()
    u = n / norm
    out = []
    for s in seeds:
        g = seeded_normal(s, pivot.shape, NEIGHBOUR_STREAM).to(torch.float64).flatten()
        w = g - (g @ u) * u
        if w.norm() < 1e-6 * g.norm():
            raise ValueError(f"neighbour seed {s} draws a direction parallel to the pivot")
        w = w / w.norm()
        out.append((norm * (tau * u + math.sqrt(max(0.0, 1.0 - tau * tau)) * w)).reshape(pivot.shape))
    return torch.stack(out).to(torch.float32)


def forward_noise(x: torch.Tensor, sigma_from: float, sigma_to: float, noise: torch.Tensor) -> torch.Tensor:
    """Exact kernel of the linear path from sigma_a up to sigma_b: x_b = c x_a + sqrt(sigma_b^2 - c^2 sigma_a^2) z."""
    if not 0.0 <= sigma_from < sigma_to <= 1.0:
        raise ValueError("need 0 <= sigma_from < sigma_to <= 1")
    if sigma_from == 0.0 and sigma_to == 1.0:
        return noise.to(x.device, x.dtype)
    c = (1.0 - sigma_to) / (1.0 - sigma_from)
    std = math.sqrt(max(0.0, sigma_to**2 - c**2 * sigma_from**2))
    return c * x + std * noise.to(x.device, x.dtype)


def linear_sigmas(sigma_from: float, sigma_to: float, steps: int) -> list[float]:
    """steps + 1 levels evenly spaced in sigma (equivalently in SiT time t = 1 - sigma)."""
    return [sigma_from + (sigma_to - sigma_from) * i / steps for i in range(steps + 1)]


def solver_nfes(solver: str, sigmas: Sequence[float]) -> int:
    """Model evaluations per sample of one solve: Heun is 2 per step except a final Euler step to sigma = 0."""
    steps = len(sigmas) - 1
    if solver in ("euler", "ddim_eta"):
        return steps
    if solver == "heun":
        return 2 * steps - (1 if sigmas[-1] == 0.0 else 0)
    raise ValueError(f"unknown solver {solver!r}")


@torch.no_grad()
def sample_euler(model: VelocityFn, x: torch.Tensor, sigmas: Sequence[float],
                 callback: XPredCallback | None = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 with first order)."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        d = model(x, s)
        if callback is not None:
            callback(i, s, x - s * d)
        x = x + d * (s_next - s)
    return x


@torch.no_grad()
def sample_heun(model: VelocityFn, x: torch.Tensor, sigmas: Sequence[float],
                callback: XPredCallback | None = None) -> torch.Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Algorithm 1); the last step to sigma = 0 is Euler."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        d = model(x, s)
        if callback is not None:
            callback(i, s, x - s * d)
        x_euler = x + d * (s_next - s)
        if s_next == 0.0:
            x = x_euler
            continue
        d_next = model(x_euler, s_next)
        x = x + (d + d_next) / 2 * (s_next - s)
    return x


@torch.no_grad()
def sample_ddim_eta(model: VelocityFn, x: torch.Tensor, sigmas: Sequence[float],
                    callback: XPredCallback | None = None, eta: float = 1.0,
                    noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """DDIM's stochastic step (Song et al. 2021, eq. 12 and 16) on this path, one evaluation per step.

    x_{s'} = (1 - s') x0_hat + sqrt(s'^2 - r^2) eps_hat + r z, with x0_hat = x - s d, eps_hat = x + (1 - s) d and
    r = eta * s' * sqrt(s^2 - c^2 s'^2) / s, c = (1 - s) / (1 - s'): eta = 1 is the exact posterior
    q(x_{s'} | x_s, x0_hat) of the forward kernel (DDPM; FK steering's DDIM with eta = 1), eta = 0 the
    deterministic DDIM step. The share of fresh noise r / s' is O(sqrt(step)), so the marginals of the path are
    kept as the steps shrink. Written as Euler's step plus a correction, so that eta = 0 is Euler bit for bit;
    the step to s' = 0 lands on x0_hat and draws nothing.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError("eta must be in [0, 1]")
    if eta > 0 and noise_sampler is None:
        raise ValueError("a stochastic step needs a noise_sampler")
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        d = model(x, s)
        if callback is not None:
            callback(i, s, x - s * d)
        x_next = x + d * (s_next - s)
        if eta > 0 and s_next > 0:
            c = (1 - s) / (1 - s_next)
            r = eta * s_next * math.sqrt(max(0.0, s * s - c * c * s_next * s_next)) / s
            eps_hat = x + (1 - s) * d
            z = noise_sampler(i).to(x.device, x.dtype)
            x_next = x_next + (math.sqrt(max(0.0, s_next * s_next - r * r)) - s_next) * eps_hat + r * z
        x = x_next
    return x


SAMPLERS = {"heun": sample_heun, "euler": sample_euler, "ddim_eta": sample_ddim_eta}
STOCHASTIC = {"ddim_eta"}


def sampler_options(solver: str, eta: float, noise_seed: int, particles: Sequence[int], shape: Sequence[int]) -> dict:
    """Extra keyword arguments of a stochastic sampler (none for the ODE solvers)."""
    if solver not in STOCHASTIC:
        return {}
    return {"eta": eta, "noise_sampler": particle_noise_sampler(noise_seed, particles, shape)}


def x_prediction(model: VelocityFn, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """One model evaluation: the denoised estimate x_data_hat = x - sigma * dx/dsigma."""
    with torch.no_grad():
        return x - sigma * model(x, sigma)

"""Compute, in one place: every network evaluation of a call goes through its network's ModelScheduler.

A call's solver is a flat sampler from sampling.SAMPLERS running in the call's own thread; its `model(x, sigma)`
submits the evaluation's rows to the model's scheduler and waits (scheduler.py), so the rows of every in-flight
call share micro-batches and the compute loop is the only place that runs a network. A new sampler needs only
an entry in SAMPLERS (and its Solver enum in validation.SOLVER_NAMES, its NFE count in sampling.solver_nfes).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .models import ServedModel
from .sampling import SAMPLERS, sampler_options
from .scheduler import EXACT, ComputeLoop, ModelScheduler, Work, check_finite


@dataclass
class Solve:
    """What one solve gives back: the samples, captured x-predictions, and per sample the micro-batch sizes."""
    out: torch.Tensor
    captured: dict[int, torch.Tensor]
    evals: int
    model_seconds: float
    sizes: list[list[int]] = field(default_factory=list)       # [evaluation][sample]
    capture_eval: dict[int, int] = field(default_factory=dict)  # step -> index of the evaluation captured there

    def sizes_of(self, sample: int, first: int = 0, last: int | None = None) -> list[int]:
        return [s[sample] for s in self.sizes[first:last]]


def reuse_first_evaluation(velocity: Callable, x: torch.Tensor, x_hat: torch.Tensor, sigma: float) -> Callable:
    """The velocity whose first call, at (x, sigma), is answered from an earlier x-prediction: d = (x - x_hat) / sigma."""
    first = [True]

    def run(at: torch.Tensor, s: float) -> torch.Tensor:
        if first[0]:
            first[0] = False
            assert s == sigma and at.shape == x.shape, (s, sigma)
            return (x - x_hat) / sigma
        return velocity(at, s)
    return run


class Compute:
    def __init__(self, models: dict[str, ServedModel], verifiers: dict, reproducibility: str = EXACT):
        self.loop = ComputeLoop()
        self.reproducibility = reproducibility
        self.velocity = {name: ModelScheduler(self.loop, f"{name} network", m.net, m.micro_batch, reproducibility)
                         for name, m in models.items()}
        # Decodes give the PNG bytes a recipe promises: always at a fixed micro-batch. Verifier forwards follow the
        # mode (in fast mode a score may differ in its last bits under another load, as the samples may).
        self.decoders = {name: ModelScheduler(self.loop, f"{name} decoder", m.decode, m.decode_micro_batch, EXACT)
                         for name, m in models.items() if m.decode is not None}
        self._nets: dict = {}
        self._nets_lock = threading.Lock()
        for v in verifiers.values():
            v.runner = self.run_net
        for m in models.values():
            m.use_runner(self.run_net)

    @property
    def queued_rows(self) -> int:
        return self.loop.queued_rows

    # ---------- side networks: verifiers' towers, text encoders ----------

    def run_net(self, fn: Callable[..., torch.Tensor], micro_batch: int, *inputs: torch.Tensor, exact: bool = False,
                name: str | None = None) -> torch.Tensor:
        """A side network's forward over row-aligned `inputs` (a verifier's, a text tower's), through a scheduler of
        its own: one per network function, so every call of a tower shared by several verifiers packs into its
        micro-batches, whatever its prompt or image. `exact`: fixed micro-batches in either mode (prompt encodings:
        they are cached and condition the samples that recipes promise)."""
        with self._nets_lock:
            s = self._nets.get(fn)
            if s is None:
                s = self._nets[fn] = ModelScheduler(self.loop, name or f"network {len(self._nets)}", fn, micro_batch,
                                                    EXACT if exact else self.reproducibility)
        if s.micro_batch != micro_batch:
            raise ValueError(f"{s.name}: served at micro-batch {s.micro_batch}, asked for {micro_batch}")
        return s.run(Work(tuple(inputs), what=f"{s.name} forward")).out

    def scheduler_of(self, fn: Callable) -> ModelScheduler | None:
        """The scheduler a side network's rows go to (None before its first forward): for tests and metrics."""
        with self._nets_lock:
            return self._nets.get(fn)

    # ---------- the diffusion model ----------

    def velocity_fn(self, model: ServedModel, values: list, guidance: float, is_active=None,
                    forced: list[int] | None = None, record: list | None = None, clock: list | None = None,
                    first_eval: int = 0):
        """dx/dsigma for a batch of conditions, through the model's scheduler; `forced` gives each evaluation's
        micro-batch size (a replay), `record` receives the sizes each evaluation ran at, per sample."""
        cond = model.conditions(values)
        evals = [first_eval]
        sched = self.velocity[model.name]

        def run(x: torch.Tensor, sigma: float) -> torch.Tensor:
            k = evals[0]
            evals[0] += 1
            what = f"model {model.name}, evaluation {k + 1} (sigma {sigma:.4g})"
            rows, unit = model.eval_rows(x, sigma, cond, guidance)
            size = None
            if forced:
                size = forced[k] if len(forced) > 1 else forced[0]
            t0 = time.perf_counter()
            work = sched.run(Work(tuple(rows), unit=unit, size=size, what=what, is_active=is_active))
            if clock is not None:
                clock[0] += time.perf_counter() - t0
            if record is not None:
                record.append(work.sizes)
            v = model.velocity(work.out, guidance, x)
            check_finite(v, what)
            return v
        return run

    def solve(self, model: ServedModel, x: torch.Tensor, values: list, settings, solver_name: str, sigmas: list[float],
              capture_steps: set[int] = frozenset(), stop_after: int = 0, is_active=None,
              forced: list[int] | None = None, particles=(0,), first_prediction: torch.Tensor | None = None) -> Solve:
        """`particles`: each row's position in its original Denoise request (keys a stochastic solver's noise).
        `first_prediction`: the x-prediction of `x` at sigmas[0], made earlier; the first step takes its
        dx/dsigma from it instead of evaluating the network (so `evals` counts one evaluation fewer)."""
        sizes: list = []
        clock = [0.0]
        velocity = self.velocity_fn(model, values, settings.guidance_scale, is_active, forced, sizes, clock)
        if first_prediction is not None:
            velocity = reuse_first_evaluation(velocity, x.to(model.device), first_prediction.to(model.device), sigmas[0])
        captured: dict[int, torch.Tensor] = {}
        capture_eval: dict[int, int] = {}

        def callback(step, s, x_hat):
            if step in capture_steps:
                captured[step] = x_hat
                capture_eval[step] = len(sizes) - 1
        grid = sigmas[: stop_after + 1] if stop_after else sigmas
        with self.velocity[model.name].session():
            options = sampler_options(solver_name, settings.eta, settings.noise_seed, list(particles), model.sample_shape)
            out = SAMPLERS[solver_name](velocity, x.to(model.device), grid, callback if capture_steps else None, **options)
        return Solve(out, captured, len(sizes), clock[0], sizes, capture_eval)

    def x_prediction(self, model: ServedModel, x: torch.Tensor, values: list, guidance: float, sigma: float,
                     is_active=None, forced: list[int] | None = None) -> tuple[torch.Tensor, list]:
        sizes: list = []
        v = self.velocity_fn(model, values, guidance, is_active, forced, sizes)(x.to(model.device), sigma)
        return x.to(model.device) - sigma * v, sizes

    # ---------- pixels ----------

    def pixels(self, model: ServedModel, x: torch.Tensor, is_active=None) -> torch.Tensor:
        """Samples -> images in [-1, 1] (N, C, H, W): the autoencoder's rows through its scheduler."""
        if model.decode is None:
            return x.float().clamp(-1, 1)
        z = x.to(model.device, torch.float32)
        out = self.decoders[model.name].run(Work((z,), what=f"model {model.name}, decode", is_active=is_active)).out
        check_finite(out, f"model {model.name}, decode")
        return out.clamp(-1, 1)


class DecodeOnce:
    """The model as a Score call's verifiers see it: to_pixels through the compute loop, memoised per tensor."""

    def __init__(self, model: ServedModel, compute: Compute, is_active=None):
        self._model, self._compute, self._is_active, self._memo = model, compute, is_active, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        for src, out in self._memo:
            if src is x:
                return out
        out = self._compute.pixels(self._model, x, self._is_active)
        self._memo.append((x, out))
        return out

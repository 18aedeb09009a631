"""Recipes, in one place: how each tensor the worker makes is described, and how a description is replayed.

A replay runs the same flat sampler through the same scheduler as the original call, at the micro-batch
sizes the recipe records, so it rebuilds the tensor bit-identically (whatever else the worker is running).
"""
from __future__ import annotations

import torch

from noisesearch.worker.v1 import worker_pb2 as pb

from . import validation as check
from .compute import Compute
from .models import ServedModel, forwards_per_eval
from .sampling import FORWARD_STREAM, STOCHASTIC, forward_noise, seeded_normal, solver_nfes, zero_order_neighbours
from .scheduler import EXACT, FAST
from .validation import SOLVER_NAMES, BadRequest, NotRebuildable

MODES = {EXACT: pb.REPRODUCIBILITY_EXACT, FAST: pb.REPRODUCIBILITY_FAST}


def _sizes(sizes: list[int], mode: str) -> list[int]:
    """exact: one size for every evaluation; fast: one per evaluation."""
    if mode == EXACT and sizes:
        assert len(set(sizes)) == 1, sizes
        return sizes[:1]
    return list(sizes)


def _batching(sizes: list[int], mode: str) -> pb.MicroBatching:
    return pb.MicroBatching(reproducibility=MODES[mode], rows=_sizes(sizes, mode))


def denoise_recipe(parent: pb.Recipe, model: ServedModel, condition: pb.Condition, settings: pb.SolverSettings,
                   sigma_from: float, sigma_to: float, sizes: list[int], mode: str, stop: int = 0,
                   particle: int = 0, first_prediction: pb.MicroBatching | None = None) -> pb.Recipe:
    """`particle`: the sample's position in its Denoise request, recorded for stochastic solvers (their noise key).
    `first_prediction`: the batching of the x-prediction its first step reused (DenoiseRequest.first_predictions)."""
    stochastic = SOLVER_NAMES[settings.solver] in STOCHASTIC
    return pb.Recipe(denoise=pb.DenoiseRecipe(
        parent=parent, model=model.name, condition=condition, solver=settings, sigma_from=sigma_from,
        sigma_to=sigma_to, stop_after_steps=stop, batching=_batching(sizes, mode),
        **({"particle": particle} if stochastic else {}),
        **({"first_prediction": first_prediction} if first_prediction is not None else {})))


def xpred_recipe(parent: pb.Recipe, model: ServedModel, condition: pb.Condition, guidance: float, sigma: float,
                 sizes: list[int], mode: str) -> pb.Recipe:
    return pb.Recipe(x_prediction=pb.XPredictionRecipe(
        parent=parent, model=model.name, condition=condition, guidance_scale=guidance, sigma=sigma,
        batching=_batching(sizes, mode)))


class Rebuilder:
    def __init__(self, models: dict[str, ServedModel], compute: Compute):
        self.models, self.compute = models, compute

    def _forced(self, model: ServedModel, sizes, evals: int, guidance: float, field: str) -> list[int]:
        sizes = list(sizes)
        if not sizes:  # made before recipes recorded it: the model's configured size
            return [model.micro_batch]
        if len(sizes) not in (1, evals):
            raise BadRequest(f"{field}.batching.rows", f"give 1 size or {evals} (one per evaluation), got {len(sizes)}")
        unit = forwards_per_eval(model, guidance)  # rows per sample and evaluation
        for i, s in enumerate(sizes):
            if not 1 <= s <= 65536:
                raise BadRequest(f"{field}.batching.rows[{i}]", f"{s} is not a micro-batch size in [1, 65536]")
            if s < unit:
                raise BadRequest(f"{field}.batching.rows[{i}]", f"{s} rows cannot hold a guided evaluation")
        return sizes

    def rebuild(self, r: pb.Recipe, field: str, is_active=None) -> torch.Tensor:
        """Replay a recipe for one sample, bit-identical to the original."""
        kind = r.WhichOneof("kind")
        if kind == "seed":
            return seeded_normal(r.seed.seed, list(r.seed.shape))
        if kind == "neighbour":
            pivot = self.rebuild(r.neighbour.pivot, f"{field}.neighbour.pivot", is_active)
            return zero_order_neighbours(pivot, r.neighbour.tau, [r.neighbour.seed])[0]
        if kind == "forward_noise":
            f = r.forward_noise
            parent = self.rebuild(f.parent, f"{field}.forward_noise.parent", is_active)
            return forward_noise(parent.unsqueeze(0), f.sigma_from, f.sigma_to,
                                 seeded_normal(f.seed, parent.shape, FORWARD_STREAM).unsqueeze(0))[0]
        if kind == "denoise":
            d = r.denoise
            model = check.model_of(self.models, d.model, f"{field}.denoise.model")
            if d.solver.solver not in SOLVER_NAMES:
                raise BadRequest(f"{field}.denoise.solver.solver", f"unknown solver {d.solver.solver}")
            parent = self.rebuild(d.parent, f"{field}.denoise.parent", is_active).unsqueeze(0)
            values, _ = check.conditions(model, [d.condition], 1, f"{field}.denoise.condition")
            sigmas = model.sigmas(d.sigma_from, d.sigma_to, d.solver.steps)
            grid = sigmas[: d.stop_after_steps + 1] if d.stop_after_steps else sigmas
            reused = d.HasField("first_prediction")
            evals = solver_nfes(SOLVER_NAMES[d.solver.solver], grid) - (1 if reused else 0)
            forced = self._forced(model, d.batching.rows, evals, d.solver.guidance_scale, f"{field}.denoise")
            first = None
            if reused:  # the x-prediction the first step reused, at the rows it ran at
                rows = self._forced(model, d.first_prediction.rows, 1, d.solver.guidance_scale, f"{field}.denoise.first_prediction")
                first, _ = self.compute.x_prediction(model, parent, values, d.solver.guidance_scale, d.sigma_from, is_active, rows)
                first = first.to("cpu", torch.float32)  # as the store held it
            solved = self.compute.solve(model, parent, values, d.solver, SOLVER_NAMES[d.solver.solver], sigmas,
                                        stop_after=d.stop_after_steps, is_active=is_active, forced=forced,
                                        particles=(d.particle,), first_prediction=first)
            return solved.out[0].cpu()
        if kind == "x_prediction":
            p = r.x_prediction
            model = check.model_of(self.models, p.model, f"{field}.x_prediction.model")
            parent = self.rebuild(p.parent, f"{field}.x_prediction.parent", is_active).unsqueeze(0)
            values, _ = check.conditions(model, [p.condition], 1, f"{field}.x_prediction.condition")
            forced = self._forced(model, p.batching.rows, 1, p.guidance_scale, f"{field}.x_prediction")
            out, _ = self.compute.x_prediction(model, parent, values, p.guidance_scale, p.sigma, is_active, forced)
            return out[0].cpu()
        if kind == "put":
            raise NotRebuildable(f"{field}: a put tensor (sha256 {r.put.sha256}) can only be put again")
        raise BadRequest(field, "empty recipe")

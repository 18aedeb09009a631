"""Request validation, in one place: every refusal is a BadRequest naming its field, raised before any compute."""
from __future__ import annotations

import math

from noisesearch.worker.v1 import worker_pb2 as pb

from .models import ServedModel
from .sampling import SAMPLERS, STOCHASTIC

# A Solver enum value -> the sampler's name in sampling.SAMPLERS (a new solver: add both, nothing else).
SOLVER_NAMES = {pb.SOLVER_HEUN: "heun", pb.SOLVER_EULER: "euler", pb.SOLVER_DDIM_ETA: "ddim_eta"}
SOLVER_ENUMS = {v: k for k, v in SOLVER_NAMES.items()}
assert set(SOLVER_NAMES.values()) <= set(SAMPLERS)
MAX_STEPS = 10_000


class BadRequest(Exception):
    """INVALID_ARGUMENT naming the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class NotRebuildable(Exception):
    """FAILED_PRECONDITION: a recipe that cannot be replayed (a tensor that was put)."""


def finite(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise BadRequest(field, f"must be a finite number, got {value}")
    return value


def sigma(field: str, value: float) -> float:
    finite(field, value)
    if not 0.0 <= value <= 1.0:
        raise BadRequest(field, f"sigma must be in [0, 1], got {value}")
    return value


def model_of(models: dict, name: str, field: str = "model") -> ServedModel:
    if name not in models:
        raise BadRequest(field, f"unknown model {name!r}; loaded: {sorted(models)}")
    return models[name]


def count(n: int, limit: int, field: str) -> None:
    if n == 0:
        raise BadRequest(field, "at least one is required")
    if n > limit:
        raise BadRequest(field, f"{n} samples is over the limit of {limit} per request")


def conditions(model: ServedModel, conditions, n: int, field: str = "conditions") -> tuple[list, list]:
    """The model's condition values, one per sample (class labels with the null class for `unconditional`, or
    prompts with "" for it), and the conditions themselves, one per sample."""
    if len(conditions) == 0:
        raise BadRequest(field, "required: one condition for every sample, or one per handle")
    if len(conditions) not in (1, n):
        raise BadRequest(field, f"give 1 condition or {n} (one per handle), got {len(conditions)}")
    prompts = model.condition_kind == "prompt"
    values, conds = [], []
    for i, c in enumerate(conditions if len(conditions) == n else [conditions[0]] * n):
        at = f"{field}[{i if len(conditions) == n else 0}]"
        kind = c.WhichOneof("kind")
        if kind == "class_label":
            if prompts:
                raise BadRequest(f"{at}.class_label", f"model {model.name} takes prompts, not class labels")
            if not 0 <= c.class_label < model.num_classes:
                raise BadRequest(f"{at}.class_label",
                                 f"{c.class_label} is out of range [0, {model.num_classes}) for {model.name}")
            values.append(c.class_label)
        elif kind == "unconditional":
            # the null class of classifier-free guidance; for a text model, the empty prompt
            values.append("" if prompts else model.num_classes)
        elif kind == "prompt":
            if not prompts:
                raise BadRequest(f"{at}.prompt", f"model {model.name} takes class labels, not prompts")
            values.append(c.prompt)
        else:
            raise BadRequest(at, f"empty condition: set {'prompt' if prompts else 'class_label'} or unconditional")
        conds.append(c)
    return values, conds


def guidance(field: str, g: float) -> float:
    finite(field, g)
    if g < 0:
        raise BadRequest(field, f"must be >= 0, got {g}")
    return g


def unconditional_defined(model: ServedModel, field: str, g: float) -> None:
    """Guidance 0 is the unconditional model alone (one pass); a model that keeps some output channels
    conditional under guidance (SiT's official forward_with_cfg) has no such model."""
    sit = getattr(model, "sit", None)
    if g == 0.0 and sit is not None and sit.guided_channels is not None and sit.guided_channels < model.sample_shape[0]:
        raise BadRequest(field, f"0 (the unconditional model alone) is undefined for {model.name}: its guidance_channels "
                         f"'{sit.guidance_channels}' keeps channels {sit.guided_channels}+ conditional; use a scale > 0 "
                         "or guidance_channels 'all'")


def solver(model: ServedModel, settings: pb.SolverSettings, field: str = "solver") -> pb.SolverSettings:
    """The request's solver settings with the model's defaults filled in (resolved once, recorded in recipes)."""
    if settings.solver not in (pb.SOLVER_UNSPECIFIED, *SOLVER_NAMES):
        raise BadRequest(f"{field}.solver", f"unknown solver {settings.solver}")
    chosen = settings.solver or SOLVER_ENUMS[model.defaults.solver]
    steps = settings.steps or model.defaults.steps
    if steps > MAX_STEPS:
        raise BadRequest(f"{field}.steps", f"{steps} is over the limit of {MAX_STEPS}")
    g = settings.guidance_scale if settings.HasField("guidance_scale") else model.defaults.guidance_scale
    guidance(f"{field}.guidance_scale", g)
    unconditional_defined(model, f"{field}.guidance_scale", g)
    if SOLVER_NAMES[chosen] not in STOCHASTIC:
        return pb.SolverSettings(solver=chosen, steps=steps, guidance_scale=g)
    eta = settings.eta if settings.HasField("eta") else 1.0
    if not 0.0 <= eta <= 1.0:  # also refuses NaN
        raise BadRequest(f"{field}.eta", f"must be in [0, 1], got {eta}")
    return pb.SolverSettings(solver=chosen, steps=steps, guidance_scale=g, eta=eta, noise_seed=settings.noise_seed)


def verifier_conditions(model: ServedModel, chosen: list, conditions, n: int):
    """Class labels and/or prompts for the verifiers that need them; a request lacking them is refused."""
    need_label = [v.name for v in chosen if v.needs_class_label]
    need_prompt = [v.name for v in chosen if v.needs_prompt]
    if not need_label and not need_prompt:
        return None, None
    what = "the class label" if need_label else "the prompt"
    if not conditions:
        raise BadRequest("conditions", f"verifier(s) {need_label or need_prompt} need {what} of each sample")
    if len(conditions) not in (1, n):
        raise BadRequest("conditions", f"give 1 condition or {n} (one per handle), got {len(conditions)}")
    labels, prompts = [], []
    for i, c in enumerate(conditions):
        kind = c.WhichOneof("kind")
        if need_label:
            if kind == "unconditional":
                raise BadRequest("conditions", "class-label verifiers cannot score unconditional samples")
            if kind != "class_label":
                raise BadRequest(f"conditions[{i}].class_label", f"verifier(s) {need_label} need the class label "
                                 f"of each sample, got {kind or 'an empty condition'}")
            limit = model.num_classes or max(getattr(v, "num_classes", 0) for v in chosen)
            if not 0 <= c.class_label < limit:
                raise BadRequest(f"conditions[{i}].class_label", f"{c.class_label} is out of range [0, {limit})")
            labels.append(c.class_label)
        if need_prompt:
            if kind != "prompt":
                raise BadRequest(f"conditions[{i}].prompt", f"verifier(s) {need_prompt} need the prompt of each "
                                 f"sample, got {kind or 'an empty condition'}")
            prompts.append(c.prompt)
    if len(conditions) == 1:
        labels, prompts = labels * n, prompts * n
    return (labels if need_label else None), (prompts if need_prompt else None)

"""The worker's operations on tensors, free of gRPC: validation, recipes, NFE counting, the store.

Every method takes and returns protobuf messages of `noisesearch.worker.v1`; the servicer in
server.py only maps exceptions to status codes.
"""
from __future__ import annotations

import hashlib
import io
import math
import platform
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from noisesearch.worker.v1 import worker_pb2 as pb

from . import __version__
from .models import Cancelled, DiffusionModel
from .sampling import (FORWARD_STREAM, SAMPLERS, STOCHASTIC, forward_noise, initial_noises, sampler_options,
                       seeded_normal, solver_nfes, x_prediction, zero_order_neighbours)
from .store import TensorStore
from .verifiers import Verifier

SOLVER_NAMES = {pb.SOLVER_HEUN: "heun", pb.SOLVER_EULER: "euler", pb.SOLVER_DDIM_ETA: "ddim_eta"}
SOLVER_ENUMS = {v: k for k, v in SOLVER_NAMES.items()}
DTYPES = {pb.DTYPE_FLOAT32: torch.float32, pb.DTYPE_FLOAT16: torch.float16, pb.DTYPE_BFLOAT16: torch.bfloat16}
DTYPE_ENUMS = {v: k for k, v in DTYPES.items()}
MAX_SEED = 2**64


class BadRequest(Exception):
    """INVALID_ARGUMENT naming the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class NotRebuildable(Exception):
    """FAILED_PRECONDITION: a recipe that cannot be replayed (a tensor that was put)."""


@dataclass
class Limits:
    max_batch: int = 16
    max_request_samples: int = 4096
    max_message_bytes: int = 64 * 1024 * 1024
    max_upscale: int = 16


def _finite(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise BadRequest(field, f"must be a finite number, got {value}")
    return value


def _sigma(field: str, value: float) -> float:
    _finite(field, value)
    if not 0.0 <= value <= 1.0:
        raise BadRequest(field, f"sigma must be in [0, 1], got {value}")
    return value


class _DecodeOnce:
    """The model, with to_pixels memoised per tensor for the length of one Score call."""

    def __init__(self, model):
        self._model, self._memo = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        for src, out in self._memo:
            if src is x:
                return out
        out = self._model.to_pixels(x)
        self._memo.append((x, out))
        return out


class Engine:
    def __init__(self, models: dict[str, DiffusionModel], verifiers: dict[str, Verifier], store: TensorStore,
                 limits: Limits, device: torch.device, dtype: torch.dtype):
        self.models, self.verifiers, self.store, self.limits = models, verifiers, store, limits
        self.device, self.dtype = device, dtype
        # One computation at a time: torch already uses every core, and it keeps memory predictable.
        self.compute_lock = threading.Lock()
        self._call = threading.local()  # per gRPC call (one thread each): the namespace generation it began in

    # ---------- helpers ----------

    def _model(self, name: str, field: str = "model") -> DiffusionModel:
        if name not in self.models:
            raise BadRequest(field, f"unknown model {name!r}; loaded: {sorted(self.models)}")
        return self.models[name]

    @staticmethod
    def _ns(namespace: str) -> str:
        return namespace or "default"

    def _batch_size(self, n: int, field: str) -> None:
        if n == 0:
            raise BadRequest(field, "at least one is required")
        if n > self.limits.max_request_samples:
            raise BadRequest(field, f"{n} samples is over the limit of {self.limits.max_request_samples} per request")

    def _inputs(self, namespace: str, handles, field: str = "handles", shape: tuple | None = None):
        self._batch_size(len(handles), field)
        entries = [self.store.get(namespace, h, f"{field}[{i}]") for i, h in enumerate(handles)]
        shapes = {tuple(e.tensor.shape) for e in entries}
        if len(shapes) != 1:
            raise BadRequest(field, f"all tensors must have one shape, got {sorted(shapes)}")
        if shape is not None and shapes != {tuple(shape)}:
            raise BadRequest(field, f"shape {shapes.pop()} does not match the model's sample shape {tuple(shape)}")
        return entries, torch.stack([e.tensor for e in entries])

    def _room_for(self, count: int, shape) -> None:
        self.store.ensure_room(count * int(np.prod(shape)) * 4)

    def begin_call(self, namespace: str) -> None:
        """Remember the namespace's generation when a call starts (see TensorStore.release_all)."""
        self._call.namespace, self._call.generation = self._ns(namespace), self.store.generation(self._ns(namespace))

    def _generation_of_call(self, namespace: str) -> int | None:
        return self._call.generation if getattr(self._call, "namespace", None) == namespace else None

    def _keep(self, namespace: str, x: torch.Tensor, recipes: list) -> list:
        out = []
        generation = self._generation_of_call(namespace)
        for i, r in enumerate(recipes):
            t = x[i].detach().to("cpu", torch.float32).contiguous()
            handle = self.store.put(namespace, t, r, generation)
            out.append(pb.TensorInfo(handle=handle, shape=list(t.shape), dtype=pb.DTYPE_FLOAT32, recipe=r))
        return out

    def _conditions(self, model: DiffusionModel, conditions, n: int, field: str = "conditions", required: bool = True):
        """The model's condition batch (class labels as a tensor, or prompts as a list) and the conditions, one per sample."""
        if len(conditions) == 0:
            if required:
                raise BadRequest(field, "required: one condition for every sample, or one per handle")
            return None, []
        if len(conditions) not in (1, n):
            raise BadRequest(field, f"give 1 condition or {n} (one per handle), got {len(conditions)}")
        prompts = getattr(model, "accepts_prompt", False)
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
        return (values if prompts else torch.tensor(values, dtype=torch.long)), conds

    def _solver(self, model: DiffusionModel, settings: pb.SolverSettings, field: str = "solver") -> pb.SolverSettings:
        if settings.solver not in (pb.SOLVER_UNSPECIFIED, *SOLVER_NAMES):
            raise BadRequest(f"{field}.solver", f"unknown solver {settings.solver}")
        solver = settings.solver or SOLVER_ENUMS[model.defaults.solver]
        steps = settings.steps or model.defaults.steps
        if steps > 10_000:
            raise BadRequest(f"{field}.steps", f"{steps} is over the limit of 10000")
        g = settings.guidance_scale if settings.HasField("guidance_scale") else model.defaults.guidance_scale
        _finite(f"{field}.guidance_scale", g)
        if g < 0:
            raise BadRequest(f"{field}.guidance_scale", f"must be >= 0, got {g}")
        if SOLVER_NAMES[solver] not in STOCHASTIC:
            return pb.SolverSettings(solver=solver, steps=steps, guidance_scale=g)
        eta = settings.eta if settings.HasField("eta") else 1.0
        if not 0.0 <= eta <= 1.0:  # also refuses NaN
            raise BadRequest(f"{field}.eta", f"must be in [0, 1], got {eta}")
        return pb.SolverSettings(solver=solver, steps=steps, guidance_scale=g, eta=eta, noise_seed=settings.noise_seed)  # absent = 0

    @staticmethod
    def _checker(is_active: Callable[[], bool] | None) -> Callable[[], None]:
        def check() -> None:
            if is_active is not None and not is_active():
                raise Cancelled("the client cancelled or its deadline passed")
        return check

    # ---------- operations ----------

    def describe(self) -> pb.DescribeResponse:
        models = [pb.ModelInfo(
            name=m.name, family=m.family, sample_shape=list(m.sample_shape), num_classes=m.num_classes,
            accepts_prompt=getattr(m, "accepts_prompt", False), checkpoint=m.checkpoint, num_parameters=m.num_parameters,
            guidance_embedded=m.forwards_per_eval(2.0) == 1,  # FLUX: guidance is an input, never a second pass
            default_solver=pb.SolverSettings(solver=SOLVER_ENUMS[m.defaults.solver], steps=m.defaults.steps,
                                             guidance_scale=m.defaults.guidance_scale))
            for m in self.models.values()]
        verifiers = []
        for v in self.verifiers.values():
            info = pb.VerifierInfo(name=v.name, description=v.description, needs_class_label=v.needs_class_label,
                                   needs_prompt=v.needs_prompt, held_out=v.held_out, models=v.models)
            if v.needs_x_prediction_at is not None:
                info.needs_x_prediction_at = v.needs_x_prediction_at
            verifiers.append(info)
        return pb.DescribeResponse(
            models=models, verifiers=verifiers, device=str(self.device), compute_dtype=DTYPE_ENUMS[self.dtype],
            max_batch=self.limits.max_batch, max_request_samples=self.limits.max_request_samples,
            memory_cap_bytes=self.store.cap_bytes, memory_used_bytes=self.store.used_bytes,
            handle_ttl_seconds=int(self.store.ttl_seconds), max_message_bytes=self.limits.max_message_bytes,
            versions={"worker": __version__, "torch": torch.__version__, "python": platform.python_version(),
                      "proto": "noisesearch.worker.v1"})

    def initial_noises(self, req: pb.InitialNoisesRequest) -> pb.TensorsResponse:
        model = self._model(req.model)
        self._batch_size(len(req.seeds), "seeds")
        self._room_for(len(req.seeds), model.sample_shape)
        x = initial_noises(list(req.seeds), model.sample_shape)
        recipes = [pb.Recipe(seed=pb.SeedRecipe(seed=s, shape=list(model.sample_shape))) for s in req.seeds]
        return pb.TensorsResponse(tensors=self._keep(self._ns(req.namespace), x, recipes))

    def neighbours(self, req: pb.ZeroOrderNeighboursRequest) -> pb.TensorsResponse:
        ns = self._ns(req.namespace)
        pivot = self.store.get(ns, req.pivot, "pivot")
        _finite("tau", req.tau)
        if not -1.0 <= req.tau <= 1.0:
            raise BadRequest("tau", f"cosine must be in [-1, 1], got {req.tau}")
        self._batch_size(len(req.seeds), "seeds")
        if float(pivot.tensor.norm()) == 0.0:
            raise BadRequest("pivot", "the pivot has zero norm: its neighbourhood is undefined")
        self._room_for(len(req.seeds), pivot.tensor.shape)
        y = zero_order_neighbours(pivot.tensor, req.tau, list(req.seeds))
        recipes = [pb.Recipe(neighbour=pb.NeighbourRecipe(pivot=pivot.recipe, tau=req.tau, seed=s)) for s in req.seeds]
        return pb.TensorsResponse(tensors=self._keep(ns, y, recipes))

    def forward_noise(self, req: pb.ForwardNoiseRequest) -> pb.TensorsResponse:
        ns = self._ns(req.namespace)
        a, b = _sigma("sigma_from", req.sigma_from), _sigma("sigma_to", req.sigma_to)
        if not b > a:
            raise BadRequest("sigma_to", f"forward noising goes up: need sigma_to > sigma_from, got {b} <= {a}")
        entries, x = self._inputs(ns, req.handles)
        if len(req.seeds) != len(entries):
            raise BadRequest("seeds", f"give one seed per handle: {len(entries)} handles, {len(req.seeds)} seeds")
        self._room_for(len(entries), x.shape[1:])
        z = torch.stack([seeded_normal(s, x.shape[1:], FORWARD_STREAM) for s in req.seeds])
        out = forward_noise(x, a, b, z)
        recipes = [pb.Recipe(forward_noise=pb.ForwardNoiseRecipe(parent=e.recipe, sigma_from=a, sigma_to=b, seed=s))
                   for e, s in zip(entries, req.seeds)]
        return pb.TensorsResponse(tensors=self._keep(ns, out, recipes))

    def denoise(self, req: pb.DenoiseRequest, is_active=None) -> pb.DenoiseResponse:
        start = time.perf_counter()
        ns = self._ns(req.namespace)
        model = self._model(req.model)
        a, b = _sigma("sigma_from", req.sigma_from), _sigma("sigma_to", req.sigma_to)
        if not b < a:
            raise BadRequest("sigma_to", f"denoising goes down: need sigma_to < sigma_from, got {b} >= {a}")
        settings = self._solver(model, req.solver)
        for i, c in enumerate(req.capture_sigmas):
            _sigma(f"capture_sigmas[{i}]", c)
        entries, x = self._inputs(ns, req.handles, shape=model.sample_shape)
        labels, conds = self._conditions(model, req.conditions, len(entries))
        self._room_for(len(entries) * (1 + len(req.capture_sigmas)), model.sample_shape)
        sigmas = model.sigmas(a, b, settings.steps)
        # Each requested level is captured at the nearest grid level where the solver evaluates its state.
        capture_at = [min(range(settings.steps), key=lambda i: (abs(sigmas[i] - c), i)) for c in req.capture_sigmas]
        with self.compute_lock:
            check = self._checker(is_active)
            check()
            out, captured, evals, model_s = self._solve(model, x, labels, settings, sigmas, set(capture_at), check,
                                                        particles=range(len(entries)))
        per_eval = model.forwards_per_eval(settings.guidance_scale)
        nfes_per_sample = evals * per_eval
        assert nfes_per_sample == solver_nfes(SOLVER_NAMES[settings.solver], sigmas) * per_eval
        stochastic = SOLVER_NAMES[settings.solver] in STOCHASTIC
        recipe_of = lambda e, c, stop=0, i=0: pb.Recipe(denoise=pb.DenoiseRecipe(  # noqa: E731
            parent=e.recipe, model=model.name, condition=c, solver=settings, sigma_from=a, sigma_to=b, stop_after_steps=stop,
            **({"particle": i} if stochastic else {})))
        tensors = self._keep(ns, out, [recipe_of(e, c, 0, i) for i, (e, c) in enumerate(zip(entries, conds))])
        captures = []
        for requested, step in zip(req.capture_sigmas, capture_at):
            s = sigmas[step]
            recipes = [pb.Recipe(x_prediction=pb.XPredictionRecipe(
                parent=recipe_of(e, c, step, i) if step > 0 else e.recipe, model=model.name, condition=c,
                guidance_scale=settings.guidance_scale, sigma=s)) for i, (e, c) in enumerate(zip(entries, conds))]
            captures.append(pb.Capture(requested_sigma=requested, sigma=s, tensors=self._keep(ns, captured[step], recipes)))
        if req.release_inputs:
            self.store.release(ns, list(req.handles))
        return pb.DenoiseResponse(tensors=tensors, nfes=nfes_per_sample * len(entries), nfes_per_sample=nfes_per_sample,
                                  captures=captures, wall_seconds=time.perf_counter() - start, model_seconds=model_s)

    def _solve(self, model, x, labels, settings, sigmas, capture_steps, check, stop_after=0, particles=(0,)):
        evals, model_time = 0, [0.0]
        captured: dict[int, torch.Tensor] = {}

        def on_forward(seconds: float) -> None:
            model_time[0] += seconds

        velocity = model.velocity_fn(labels, settings.guidance_scale, check, on_forward)

        def counted(xx, s):
            nonlocal evals
            evals += 1
            return velocity(xx, s)

        def callback(step, s, x_hat):
            if step in capture_steps:
                captured[step] = x_hat
        grid = sigmas[: stop_after + 1] if stop_after else sigmas
        x = x.to(model.device)
        name = SOLVER_NAMES[settings.solver]
        options = sampler_options(name, settings.eta, settings.noise_seed, list(particles), model.sample_shape)
        out = SAMPLERS[name](counted, x, grid, callback if capture_steps else None, **options)
        return out, captured, evals, model_time[0]

    def x_prediction(self, req: pb.XPredictionRequest, is_active=None) -> pb.DenoiseResponse:
        start = time.perf_counter()
        ns = self._ns(req.namespace)
        model = self._model(req.model)
        s = _sigma("sigma", req.sigma)
        if s == 0.0:
            raise BadRequest("sigma", "the x-prediction of a clean sample (sigma = 0) is the sample itself")
        g = req.guidance_scale if req.HasField("guidance_scale") else model.defaults.guidance_scale
        _finite("guidance_scale", g)
        entries, x = self._inputs(ns, req.handles, shape=model.sample_shape)
        labels, conds = self._conditions(model, req.conditions, len(entries))
        self._room_for(len(entries), model.sample_shape)
        with self.compute_lock:
            check = self._checker(is_active)
            check()
            out = x_prediction(model.velocity_fn(labels, g, check), x, s)
        recipes = [pb.Recipe(x_prediction=pb.XPredictionRecipe(parent=e.recipe, model=model.name, condition=c,
                                                              guidance_scale=g, sigma=s)) for e, c in zip(entries, conds)]
        per = model.forwards_per_eval(g)
        return pb.DenoiseResponse(tensors=self._keep(ns, out, recipes), nfes=per * len(entries), nfes_per_sample=per,
                                  wall_seconds=time.perf_counter() - start)

    def score(self, req: pb.ScoreRequest, is_active=None) -> pb.ScoreResponse:
        start = time.perf_counter()
        ns = self._ns(req.namespace)
        model = self._model(req.model)
        if not req.verifiers:
            raise BadRequest("verifiers", "name at least one verifier")
        entries, x = self._inputs(ns, req.handles, shape=model.sample_shape)
        chosen = []
        for i, name in enumerate(req.verifiers):
            v = self.verifiers.get(name)
            if v is None:
                raise BadRequest(f"verifiers[{i}]", f"unknown verifier {name!r}; loaded: {sorted(self.verifiers)}")
            if model.name not in v.models:
                raise BadRequest(f"verifiers[{i}]", f"verifier {name!r} does not score samples of {model.name}")
            chosen.append(v)
        labels, prompts = self._verifier_conditions(model, chosen, req.conditions, len(entries))
        xpreds = None
        if any(v.needs_x_prediction_at is not None for v in chosen):
            if len(req.x_prediction_handles) != len(entries):
                raise BadRequest("x_prediction_handles", f"give one x-prediction per sample ({len(entries)}), got "
                                 f"{len(req.x_prediction_handles)}: a self-supervised verifier compares them")
            _, xpreds = self._inputs(ns, req.x_prediction_handles, "x_prediction_handles", model.sample_shape)
        results = []
        # Every verifier of the request sees the same tensors, so each is decoded to pixels once.
        decoded = _DecodeOnce(model)
        x = x.to(self.device)
        xpreds = None if xpreds is None else xpreds.to(self.device)
        with self.compute_lock:
            check = self._checker(is_active)
            for v in chosen:
                check()
                scores = v.score(decoded, x, labels, xpreds, prompts=prompts)
                results.append(pb.VerifierScores(verifier=v.name, scores=scores.tolist()))
        return pb.ScoreResponse(results=results, verifier_calls=len(chosen) * len(entries),
                                wall_seconds=time.perf_counter() - start)

    def _verifier_conditions(self, model, chosen: list, conditions, n: int):
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
        return (torch.tensor(labels, dtype=torch.long) if need_label else None), (prompts if need_prompt else None)

    def decode(self, req: pb.DecodeRequest) -> pb.DecodeResponse:
        ns = self._ns(req.namespace)
        model = self._model(req.model)
        up = req.upscale or 1
        if up > self.limits.max_upscale:
            raise BadRequest("upscale", f"{up} is over the limit of {self.limits.max_upscale}")
        _, x = self._inputs(ns, req.handles, shape=model.sample_shape)
        with self.compute_lock:
            images = model.to_uint8(x)
        pngs = []
        for img in images:
            pil = Image.fromarray(img)
            if up > 1:
                pil = pil.resize((pil.width * up, pil.height * up), Image.NEAREST)
            buf = io.BytesIO()
            pil.save(buf, format="PNG", optimize=False)
            pngs.append(buf.getvalue())
        return pb.DecodeResponse(png=pngs)

    def materialize(self, req: pb.MaterializeRequest, is_active=None) -> pb.TensorsResponse:
        ns = self._ns(req.namespace)
        self._batch_size(len(req.recipes), "recipes")
        check = self._checker(is_active)
        with self.compute_lock:
            xs = [self._rebuild(r, f"recipes[{i}]", check) for i, r in enumerate(req.recipes)]
        return pb.TensorsResponse(tensors=[self._keep(ns, x.unsqueeze(0), [r])[0] for x, r in zip(xs, req.recipes)])

    def _rebuild(self, r: pb.Recipe, field: str, check) -> torch.Tensor:
        """Replay a recipe for one sample; batch-invariant kernels make it bit-identical to the original."""
        kind = r.WhichOneof("kind")
        if kind == "seed":
            return seeded_normal(r.seed.seed, list(r.seed.shape))
        if kind == "neighbour":
            pivot = self._rebuild(r.neighbour.pivot, f"{field}.neighbour.pivot", check)
            return zero_order_neighbours(pivot, r.neighbour.tau, [r.neighbour.seed])[0]
        if kind == "forward_noise":
            f = r.forward_noise
            parent = self._rebuild(f.parent, f"{field}.forward_noise.parent", check)
            return forward_noise(parent.unsqueeze(0), f.sigma_from, f.sigma_to,
                                 seeded_normal(f.seed, parent.shape, FORWARD_STREAM).unsqueeze(0))[0]
        if kind == "denoise":
            d = r.denoise
            model = self._model(d.model, f"{field}.denoise.model")
            parent = self._rebuild(d.parent, f"{field}.denoise.parent", check).unsqueeze(0)
            labels, _ = self._conditions(model, [d.condition], 1, f"{field}.denoise.condition")
            sigmas = model.sigmas(d.sigma_from, d.sigma_to, d.solver.steps)
            out, _, _, _ = self._solve(model, parent, labels, d.solver, sigmas, set(), check, d.stop_after_steps,
                                       particles=(d.particle,))
            return out[0]
        if kind == "x_prediction":
            p = r.x_prediction
            model = self._model(p.model, f"{field}.x_prediction.model")
            parent = self._rebuild(p.parent, f"{field}.x_prediction.parent", check).unsqueeze(0)
            labels, _ = self._conditions(model, [p.condition], 1, f"{field}.x_prediction.condition")
            return x_prediction(model.velocity_fn(labels, p.guidance_scale, check), parent, p.sigma)[0]
        if kind == "put":
            raise NotRebuildable(f"{field}: a put tensor (sha256 {r.put.sha256}) can only be put again")
        raise BadRequest(field, "empty recipe")

    def fetch(self, req: pb.FetchRequest) -> pb.FetchResponse:
        ns = self._ns(req.namespace)
        entries, _ = self._inputs(ns, req.handles)
        total = sum(e.nbytes for e in entries)
        if total > self.limits.max_message_bytes - 1024 * 1024:
            raise BadRequest("handles", f"{total} bytes do not fit one message ({self.limits.max_message_bytes}): fetch fewer")
        return pb.FetchResponse(tensors=[
            pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(e.tensor.shape),
                      raw_data=e.tensor.numpy().astype("<f4", copy=False).tobytes()) for e in entries])

    def put(self, req: pb.PutRequest) -> pb.TensorsResponse:
        ns = self._ns(req.namespace)
        self._batch_size(len(req.tensors), "tensors")
        xs, recipes = [], []
        for i, t in enumerate(req.tensors):
            if t.dtype not in DTYPES:
                raise BadRequest(f"tensors[{i}].dtype", "must be FLOAT32, FLOAT16 or BFLOAT16")
            if not t.shape or any(d <= 0 for d in t.shape):
                raise BadRequest(f"tensors[{i}].shape", f"dimensions must be positive, got {list(t.shape)}")
            dtype = DTYPES[t.dtype]
            expected = int(np.prod(t.shape)) * torch.tensor([], dtype=dtype).element_size()
            if len(t.raw_data) != expected:
                raise BadRequest(f"tensors[{i}].raw_data", f"{len(t.raw_data)} bytes, but shape {list(t.shape)} of "
                                 f"{pb.DType.Name(t.dtype)} needs {expected}")
            x = torch.frombuffer(bytearray(t.raw_data), dtype=dtype).reshape(list(t.shape)).float()
            if not bool(torch.isfinite(x).all()):
                raise BadRequest(f"tensors[{i}].raw_data", "contains NaN or infinite values")
            xs.append(x)
            recipes.append(pb.Recipe(put=pb.PutRecipe(sha256=hashlib.sha256(t.raw_data).hexdigest())))
        self.store.ensure_room(sum(x.numel() * 4 for x in xs))
        return pb.TensorsResponse(tensors=[self._keep(ns, x.unsqueeze(0), [r])[0] for x, r in zip(xs, recipes)])

    def release(self, req: pb.ReleaseRequest) -> pb.ReleaseResponse:
        ns = self._ns(req.namespace)
        n = self.store.release_all(ns) if req.all else self.store.release(ns, list(req.handles))
        return pb.ReleaseResponse(released=n, memory_used_bytes=self.store.used_bytes)

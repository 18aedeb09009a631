"""The worker's operations on tensors, free of gRPC: validation, recipes, NFE counting, the store.

Every method takes and returns protobuf messages of `noisesearch.worker.v1`; the servicer in
server.py only maps exceptions to status codes.
"""
from __future__ import annotations

import hashlib
import io
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from noisesearch.worker.v1 import worker_pb2 as pb

from . import __version__
from . import validation as check
from .compute import Compute, DecodeOnce
from .models import ServedModel, forwards_per_eval, pixels_to_uint8
from .recipes import Rebuilder, denoise_recipe, xpred_recipe
from .sampling import (FORWARD_STREAM, forward_noise, initial_noises, seeded_normal, solver_nfes,
                       zero_order_neighbours)
from .scheduler import CALL, EXACT, Cancelled
from .store import TensorStore
from .validation import SOLVER_ENUMS, SOLVER_NAMES, BadRequest, NotRebuildable  # noqa: F401 (re-exported)
from .verifiers import Verifier

DTYPES = {pb.DTYPE_FLOAT32: torch.float32, pb.DTYPE_FLOAT16: torch.float16, pb.DTYPE_BFLOAT16: torch.bfloat16}
DTYPE_ENUMS = {v: k for k, v in DTYPES.items()}
REPRODUCIBILITY_ENUMS = {"exact": pb.REPRODUCIBILITY_EXACT, "fast": pb.REPRODUCIBILITY_FAST}


@dataclass
class Limits:
    max_batch: int = 16  # micro-batch of decodes and verifier forwards (the models' own: ModelInfo.micro_batch)
    max_request_samples: int = 4096
    max_message_bytes: int = 64 * 1024 * 1024
    max_upscale: int = 16


class Engine:
    """The worker's calls: validate (validation.py), compute (compute.py, through the schedulers), keep the
    outputs with their recipes (recipes.py) in the store."""

    def __init__(self, models: dict[str, ServedModel], verifiers: dict[str, Verifier], store: TensorStore,
                 limits: Limits, device: torch.device, dtype: torch.dtype, reproducibility: str = EXACT):
        self.models, self.verifiers, self.store, self.limits = models, verifiers, store, limits
        self.device, self.dtype = device, dtype
        self.compute = Compute(models, verifiers, reproducibility)
        self.reproducibility = reproducibility
        self.rebuilder = Rebuilder(models, self.compute)
        self._call = threading.local()  # per gRPC call (one thread each): the namespace generation it began in

    # ---------- helpers ----------

    def _model(self, name: str, field: str = "model") -> ServedModel:
        return check.model_of(self.models, name, field)

    @staticmethod
    def _ns(namespace: str) -> str:
        return namespace or "default"

    def _batch_size(self, n: int, field: str) -> None:
        check.count(n, self.limits.max_request_samples, field)

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

    def begin_call(self, namespace: str, is_active=None) -> None:
        """Remember the namespace's generation when a call starts (see TensorStore.release_all), and its liveness."""
        self._call.namespace, self._call.generation = self._ns(namespace), self.store.generation(self._ns(namespace))
        CALL.is_active = is_active

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

    @staticmethod
    def _alive(is_active) -> None:
        if is_active is not None and not is_active():
            raise Cancelled("the client cancelled or its deadline passed")

    # ---------- operations ----------

    def describe(self) -> pb.DescribeResponse:
        models = [pb.ModelInfo(
            name=m.name, family=m.family, sample_shape=list(m.sample_shape), num_classes=m.num_classes,
            accepts_prompt=m.condition_kind == "prompt", checkpoint=m.checkpoint, num_parameters=m.num_parameters,
            guidance_embedded=m.guidance_kind == "embedded", micro_batch=m.micro_batch,
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
            queued_rows=self.compute.queued_rows, reproducibility=REPRODUCIBILITY_ENUMS[self.reproducibility],
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
        check.finite("tau", req.tau)
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
        a, b = check.sigma("sigma_from", req.sigma_from), check.sigma("sigma_to", req.sigma_to)
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
        a, b = check.sigma("sigma_from", req.sigma_from), check.sigma("sigma_to", req.sigma_to)
        if not b < a:
            raise BadRequest("sigma_to", f"denoising goes down: need sigma_to < sigma_from, got {b} >= {a}")
        settings = check.solver(model, req.solver)
        for i, c in enumerate(req.capture_sigmas):
            check.sigma(f"capture_sigmas[{i}]", c)
        entries, x = self._inputs(ns, req.handles, shape=model.sample_shape)
        values, conds = check.conditions(model, req.conditions, len(entries))
        self._room_for(len(entries) * (1 + len(req.capture_sigmas)), model.sample_shape)
        sigmas = model.sigmas(a, b, settings.steps)
        # Each requested level is captured at the nearest grid level where the solver evaluates its state.
        capture_at = [min(range(settings.steps), key=lambda i: (abs(sigmas[i] - c), i)) for c in req.capture_sigmas]
        first, first_rows = self._first_predictions(ns, req, entries, conds, model, settings, a)
        if first is not None and 0 in capture_at:
            i = capture_at.index(0)
            raise BadRequest(f"capture_sigmas[{i}]", f"{req.capture_sigmas[i]} is captured at sigma_from {a}, whose "
                             "x-prediction is the one given in first_predictions")
        self._alive(is_active)
        solver = SOLVER_NAMES[settings.solver]
        solved = self.compute.solve(model, x, values, settings, solver, sigmas, set(capture_at), is_active=is_active,
                                    particles=range(len(entries)), first_prediction=first)
        per_eval = forwards_per_eval(model, settings.guidance_scale)
        nfes_per_sample = solved.evals * per_eval
        assert nfes_per_sample == (solver_nfes(solver, sigmas) - (first is not None)) * per_eval
        mode = self.reproducibility
        reused = lambda i: first_rows[i] if first is not None else None  # noqa: E731
        tensors = self._keep(ns, solved.out, [
            denoise_recipe(e.recipe, model, c, settings, a, b, solved.sizes_of(i), mode, particle=i, first_prediction=reused(i))
            for i, (e, c) in enumerate(zip(entries, conds))])
        captures = []
        for requested, step in zip(req.capture_sigmas, capture_at):
            s, k = sigmas[step], solved.capture_eval[step]
            recipes = [xpred_recipe(
                denoise_recipe(e.recipe, model, c, settings, a, b, solved.sizes_of(i, 0, k), mode, step, particle=i,
                               first_prediction=reused(i)) if step > 0
                else e.recipe, model, c, settings.guidance_scale, s, solved.sizes_of(i, k, k + 1), mode)
                for i, (e, c) in enumerate(zip(entries, conds))]
            captures.append(pb.Capture(requested_sigma=requested, sigma=s, tensors=self._keep(ns, solved.captured[step], recipes)))
        if req.release_inputs:
            self.store.release(ns, list(req.handles))
        return pb.DenoiseResponse(tensors=tensors, nfes=nfes_per_sample * len(entries), nfes_per_sample=nfes_per_sample,
                                  captures=captures, wall_seconds=time.perf_counter() - start,
                                  model_seconds=solved.model_seconds)

    def _first_predictions(self, ns: str, req: pb.DenoiseRequest, entries, conds, model: ServedModel, settings, sigma_from: float):
        """DenoiseRequest.first_predictions: each must be the x-prediction of its input at sigma_from with this solver's
        guidance and the input's condition (checked on its recipe). Gives the stacked tensors and each one's batching."""
        if not req.first_predictions:
            return None, []
        field = "first_predictions"
        if len(req.first_predictions) != len(entries):
            raise BadRequest(field, f"give one per handle: {len(entries)} handles, {len(req.first_predictions)} x-predictions")
        given, rows = [], []
        same = lambda a, b: a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)  # noqa: E731
        for i, (h, e, c) in enumerate(zip(req.first_predictions, entries, conds)):
            f = self.store.get(ns, h, f"{field}[{i}]")
            if f.recipe.WhichOneof("kind") != "x_prediction":
                raise BadRequest(f"{field}[{i}]", f"{h} is not an x-prediction")
            p = f.recipe.x_prediction
            if not same(p.parent, e.recipe):
                raise BadRequest(f"{field}[{i}]", f"{h} is not an x-prediction of handles[{i}]")
            if p.sigma != sigma_from:
                raise BadRequest(f"{field}[{i}]", f"{h} is at sigma {p.sigma}, not sigma_from {sigma_from}")
            if p.guidance_scale != settings.guidance_scale:
                raise BadRequest(f"{field}[{i}]", f"{h} has guidance {p.guidance_scale}, the solver {settings.guidance_scale}")
            if p.model != model.name or not same(p.condition, c):
                raise BadRequest(f"{field}[{i}]", f"{h} was made for another model or condition")
            given.append(f.tensor)
            rows.append(p.batching)
        return torch.stack(given), rows

    def x_prediction(self, req: pb.XPredictionRequest, is_active=None) -> pb.DenoiseResponse:
        start = time.perf_counter()
        ns = self._ns(req.namespace)
        model = self._model(req.model)
        s = check.sigma("sigma", req.sigma)
        if s == 0.0:
            raise BadRequest("sigma", "the x-prediction of a clean sample (sigma = 0) is the sample itself")
        g = req.guidance_scale if req.HasField("guidance_scale") else model.defaults.guidance_scale
        check.finite("guidance_scale", g)
        check.unconditional_defined(model, "guidance_scale", g)
        entries, x = self._inputs(ns, req.handles, shape=model.sample_shape)
        values, conds = check.conditions(model, req.conditions, len(entries))
        self._room_for(len(entries), model.sample_shape)
        self._alive(is_active)
        out, sizes = self.compute.x_prediction(model, x, values, g, s, is_active)
        recipes = [xpred_recipe(e.recipe, model, c, g, s, [sizes[0][i]], self.reproducibility)
                   for i, (e, c) in enumerate(zip(entries, conds))]
        per = forwards_per_eval(model, g)
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
        labels, prompts = check.verifier_conditions(model, chosen, req.conditions, len(entries))
        labels = None if labels is None else torch.tensor(labels, dtype=torch.long)
        xpreds = None
        if any(v.needs_x_prediction_at is not None for v in chosen):
            if len(req.x_prediction_handles) != len(entries):
                raise BadRequest("x_prediction_handles", f"give one x-prediction per sample ({len(entries)}), got "
                                 f"{len(req.x_prediction_handles)}: a self-supervised verifier compares them")
            _, xpreds = self._inputs(ns, req.x_prediction_handles, "x_prediction_handles", model.sample_shape)
        results = []
        # Every verifier of the request sees the same tensors, so each is decoded to pixels once.
        decoded = DecodeOnce(model, self.compute, is_active)
        x = x.to(self.device)
        xpreds = None if xpreds is None else xpreds.to(self.device)
        for v in chosen:
            self._alive(is_active)
            scores = v.score(decoded, x, labels, xpreds, prompts=prompts)
            results.append(pb.VerifierScores(verifier=v.name, scores=scores.tolist()))
        return pb.ScoreResponse(results=results, verifier_calls=len(chosen) * len(entries),
                                wall_seconds=time.perf_counter() - start)

    def decode(self, req: pb.DecodeRequest, is_active=None) -> pb.DecodeResponse:
        ns = self._ns(req.namespace)
        model = self._model(req.model)
        up = req.upscale or 1
        if up > self.limits.max_upscale:
            raise BadRequest("upscale", f"{up} is over the limit of {self.limits.max_upscale}")
        _, x = self._inputs(ns, req.handles, shape=model.sample_shape)
        images = pixels_to_uint8(model, self.compute.pixels(model, x, is_active))
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
        # Each recipe replays in its own thread, so their rows share micro-batches (same bits: exact sizes).
        with ThreadPoolExecutor(max_workers=min(8, len(req.recipes))) as pool:
            xs = list(pool.map(lambda ir: self.rebuilder.rebuild(ir[1], f"recipes[{ir[0]}]", is_active),
                               enumerate(req.recipes)))
        return pb.TensorsResponse(tensors=[self._keep(ns, x.unsqueeze(0), [r])[0] for x, r in zip(xs, req.recipes)])

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

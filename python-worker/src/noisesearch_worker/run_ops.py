"""Worker.Run: several dependent calls in one round trip (issue 10, part 4).

A thin dispatcher over the Engine's existing methods: each op runs exactly as its own RPC would
(same validation, recipes, NFE counts and bits), in order; a handle "@<op>.<i>" names output i of an
earlier op of the same call, "@<op>.c<k>.<i>" output i of that denoise's capture k. Nothing else.
"""
from __future__ import annotations

from typing import Callable

from noisesearch.worker.v1 import worker_pb2 as pb

from .engine import BadRequest


def _outputs(result: pb.RunResult) -> tuple[list[str], list[list[str]]]:
    kind = result.WhichOneof("result")
    if kind == "tensors":
        return [t.handle for t in result.tensors.tensors], []
    if kind == "denoise":
        d = result.denoise
        return [t.handle for t in d.tensors], [[t.handle for t in c.tensors] for c in d.captures]
    return [], []


def _resolve(handle: str, made: list[tuple[list[str], list[list[str]]]]) -> str:
    if not handle.startswith("@"):
        return handle
    try:
        op, *rest = handle[1:].split(".")
        outputs, captures = made[int(op)]
        if len(rest) == 2 and rest[0].startswith("c"):
            return captures[int(rest[0][1:])][int(rest[1])]
        (i,) = rest
        return outputs[int(i)]
    except (ValueError, IndexError):
        raise BadRequest("handles", f"{handle!r} names no output of an earlier op of this Run call") from None


def run_ops(engine, request: pb.RunRequest, is_active: Callable[[], bool]) -> pb.RunResponse:
    made: list[tuple[list[str], list[list[str]]]] = []
    results = []
    for n, op in enumerate(request.ops):
        kind = op.WhichOneof("op")
        if kind is None:
            raise BadRequest("ops", "an op names no call")
        req = getattr(op, kind)
        if n == 0:
            engine.begin_call(req.namespace)  # one call: a release_all of the namespace meanwhile voids it all
        fix = lambda hs: [_resolve(h, made) for h in hs]  # noqa: E731
        if kind == "initial_noises":
            result = pb.RunResult(tensors=engine.initial_noises(req))
        elif kind == "neighbours":
            req.pivot = _resolve(req.pivot, made)
            result = pb.RunResult(tensors=engine.neighbours(req))
        elif kind == "forward_noise":
            req.handles[:] = fix(req.handles)
            result = pb.RunResult(tensors=engine.forward_noise(req))
        elif kind == "denoise":
            req.handles[:] = fix(req.handles)
            req.first_predictions[:] = fix(req.first_predictions)
            result = pb.RunResult(denoise=engine.denoise(req, is_active))
        elif kind == "x_prediction":
            req.handles[:] = fix(req.handles)
            result = pb.RunResult(denoise=engine.x_prediction(req, is_active))
        elif kind == "score":
            req.handles[:] = fix(req.handles)
            req.x_prediction_handles[:] = fix(req.x_prediction_handles)
            result = pb.RunResult(score=engine.score(req, is_active))
        elif kind == "release":
            if req.all:
                raise BadRequest("ops", "release inside Run takes handles, not all")
            req.handles[:] = fix(req.handles)
            result = pb.RunResult(release=engine.release(req))
        elif kind == "decode":
            req.handles[:] = fix(req.handles)
            result = pb.RunResult(decode=engine.decode(req, is_active))
        else:
            raise BadRequest("ops", f"{kind} cannot run inside Run")
        results.append(result)
        made.append(_outputs(result))
    return pb.RunResponse(results=results)

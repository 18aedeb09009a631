"""The baseline of `bench/concurrency.ts`: a best-of-N search as a plain in-process Python loop, no service.

Reads one N per line on stdin, answers one JSON line: the seconds of N noises -> Euler (steps, guidance 1) at batch
N -> classifier-logit and evaluator scores -> the best one's PNG, timed in-process (the model stays loaded).
"""
from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch_worker.config import WorkerConfig, build_engine  # noqa: E402
from noisesearch_worker.models import run_fixed_batches  # noqa: E402
from noisesearch_worker.sampling import initial_noises, sample_euler  # noqa: E402


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    engine = build_engine(WorkerConfig(device="cpu"))
    model = engine.models["sit-fmnist"]
    verifier = engine.verifiers["classifier-logit"].net
    evaluator = engine.verifiers["evaluator-logprob"].net
    best_of = best_of_factory(model, verifier, evaluator, steps)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        # In a thread of its own, as the worker's compute loop runs: on this oversubscribed 2-core machine,
        # OpenMP from the main thread ran 10-30x slower at batch 1 than from a thread (measured, load ~15).
        box = {}
        worker = threading.Thread(target=lambda: box.update(seconds=best_of(n)))
        worker.start()
        worker.join()
        print(json.dumps({"n": n, "seconds": box["seconds"]}), flush=True)


def best_of_factory(model, verifier, evaluator, steps):
    def best_of(n: int) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = initial_noises(list(range(1, n + 1)), model.sample_shape)
            labels = torch.full((n,), 7)
            cond = model.conditions(labels.tolist())
            def velocity(xx, s):
                rows, _ = model.eval_rows(xx, s, cond, 1.0)
                return model.velocity(run_fixed_batches(model.net, n, *rows), 1.0, xx)
            out = sample_euler(velocity, x, model.sigmas(1.0, 0.0, steps))
            px = out.clamp(-1, 1)
            score = run_fixed_batches(verifier, n, px)[:, 7]
            run_fixed_batches(evaluator, n, px)
            best = int(score.argmax())
            buf = io.BytesIO()
            Image.fromarray(model.to_uint8(out[best:best + 1])[0]).save(buf, format="PNG")
        return time.perf_counter() - t0
    return best_of


if __name__ == "__main__":
    main()

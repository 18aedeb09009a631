"""Evaluator accuracy of the default model's samples: the share classified as their conditioning class.

Example: python scripts/eval_default_model.py --per-class 100 --solver heun --steps 10 --guidance 1.0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch_worker.classifiers import EvaluatorResNet  # noqa: E402
from noisesearch_worker.models import load_sit_model, run_fixed_batches  # noqa: E402
from noisesearch_worker.sampling import SAMPLERS, initial_noises, linear_sigmas, solver_nfes  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

CKPT = Path(__file__).resolve().parents[1] / "checkpoints"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--solver", default="heun")
    ap.add_argument("--steps", type=int, nargs="+", default=[10])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    ap.add_argument("--seed-offset", type=int, default=1_000_000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_sit_model({"name": "sit-fmnist", "checkpoint": "sit-fmnist.safetensors"}, CKPT,
                           torch.device("cpu"), torch.float32, 64)
    evaluator = EvaluatorResNet()
    evaluator.load_state_dict(load_file(str(CKPT / "evaluator-resnet.safetensors")))
    evaluator.eval()
    labels = torch.arange(10).repeat_interleave(args.per_class)
    seeds = [args.seed_offset + i for i in range(len(labels))]
    noise = initial_noises(seeds, model.sample_shape)
    for steps in args.steps:
        for g in args.guidance:
            t0 = time.time()
            sigmas = linear_sigmas(1.0, 0.0, steps)
            x = SAMPLERS[args.solver](model.velocity_fn(labels, g), noise, sigmas)
            with torch.inference_mode():
                pred = run_fixed_batches(evaluator, 64, x).argmax(1)
            acc = (pred == labels).float().mean().item()
            nfes = solver_nfes(args.solver, sigmas) * (1 if g == 1.0 else 2)
            print(json.dumps({"solver": args.solver, "steps": steps, "nfes_per_sample": nfes, "guidance": g,
                              "samples": len(labels), "evaluator_accuracy": round(acc, 4),
                              "seconds": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()

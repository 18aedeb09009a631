"""python -m noisesearch_worker.testing.make_tiny_flux OUTDIR [--threads N]

Writes tiny random releases in the real layouts under OUTDIR, and OUTDIR/worker.json, a worker config that serves
them: a FLUX.1-dev-style diffusers folder (`FLUX.1-tiny/`: transformer, vae, CLIP + T5 text towers and tokenizers,
scheduler; 16x16 images) and the three text-to-image verifiers: `aesthetic` (LAION MLP over CLIP), `clip-score`
(CLIPScore) and `image-reward` (ImageReward.pt + med_config.json + BERT tokenizer). Prints the config's path.
For the orchestrator's e2e test (test/flux.e2e-spec.ts): NOISESEARCH_WORKER_ARGS="--config OUTDIR/worker.json".
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .tiny_models import flux_parts, flux_spec, save_aesthetic_head, save_clip_release, save_flux_release, \
    save_imagereward_release

MODEL = "flux-tiny"
VERIFIERS = ("aesthetic", "clip-score", "image-reward")


def make(out: Path, threads: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    save_flux_release(out / "FLUX.1-tiny", flux_parts(seed=7))
    save_clip_release(out / "clip-vit-tiny")
    save_aesthetic_head(out / "aesthetic.pth")
    ir = save_imagereward_release(out)
    config = {
        "device": "cpu", "max_batch": 4, "threads": threads, "verifier_bundles": [], "memory_cap_mb": 256,
        # Euler 4 steps per candidate (guidance 3.5 is a model input: 4 NFEs); T5 padded to 16 tokens, not 512.
        "models": [flux_spec(out / "FLUX.1-tiny", name=MODEL, max_sequence_length=16,
                             default_solver={"solver": "euler", "steps": 4, "guidance_scale": 3.5})],
        "verifiers": [
            {"name": "aesthetic", "kind": "aesthetic", "clip": str(out / "clip-vit-tiny"), "head": str(out / "aesthetic.pth")},
            {"name": "clip-score", "kind": "clipscore", "clip": str(out / "clip-vit-tiny")},
            {"name": "image-reward", "kind": "imagereward", **ir},
        ],
    }
    path = out / "worker.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make_tiny_flux", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the worker (0 = torch's default)")
    args = ap.parse_args(argv)
    print(make(Path(args.outdir).resolve(), args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the embedded default model: a small class-conditional SiT on Fashion-MNIST, in pixel space.

Linear interpolant x_t = t x_data + (1 - t) eps (SiT time t = 1 - sigma), velocity target x_data - eps,
uniform t, 10% label dropout for classifier-free guidance, EMA weights saved.
Example (the shipped checkpoint): python scripts/train_sit.py --steps 6000 --seed 0
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch_worker.data import load_split  # noqa: E402
from noisesearch_worker.sit import SIT_CONFIGS, SiT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="sit-fmnist")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "checkpoints" / "sit-fmnist.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    x_train, y_train = load_split("train")
    model = SiT(SIT_CONFIGS[args.config])
    model.initialize_weights()
    model.to(args.device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup))
    n = x_train.shape[0]
    start = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x1 = x_train[idx]
        flip = torch.rand(args.batch, generator=gen) < 0.5
        x1 = torch.where(flip[:, None, None, None], x1.flip(-1), x1).to(args.device)
        y = y_train[idx].to(args.device)
        x0 = torch.randn(x1.shape, generator=gen).to(args.device)
        t = torch.rand(args.batch, generator=gen).to(args.device)
        xt = t[:, None, None, None] * x1 + (1 - t[:, None, None, None]) * x0
        drop = torch.rand(args.batch, generator=gen).to(args.device) < model.params.class_dropout_prob
        y_in = torch.where(drop, torch.full_like(y, model.num_classes), y)
        v = model(xt, t, y_in)
        loss = ((v - (x1 - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        if step % 100 == 0 or step == args.steps:
            print(json.dumps({"step": step, "loss": round(loss.item(), 5), "elapsed_s": round(time.time() - start, 1)}), flush=True)
    meta = {"format": "noisesearch-sit", "config": args.config, "params": json.dumps(model.params.to_dict()),
            "train_args": json.dumps(vars(args)), "train_seconds": f"{time.time() - start:.0f}"}
    state = {k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, args.out, metadata=meta)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()

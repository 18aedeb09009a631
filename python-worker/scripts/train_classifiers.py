"""Train the default bundle's verifier classifier and evaluator classifier on Fashion-MNIST,
and write the evaluator's reference feature statistics of the test split (for FID).

Example (the shipped checkpoints): python scripts/train_classifiers.py --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch_worker.classifiers import CLASSIFIERS  # noqa: E402
from noisesearch_worker.data import load_split  # noqa: E402

CKPT = Path(__file__).resolve().parents[1] / "checkpoints"


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    shift = torch.randint(-2, 3, (2,), generator=gen).tolist()  # one small translation per batch
    return torch.roll(x, shifts=shift, dims=(2, 3))


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item() for i in range(0, len(x), 1000))
    return correct / len(x)


def train_one(name: str, epochs: int, seed: int, batch: int, lr: float, device: str, out_dir: Path = CKPT) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("test")
    x_test, y_test = x_test.to(device), y_test.to(device)
    model = CLASSIFIERS[name]().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = len(x_train) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(model(augment(x_train[idx], gen).to(device)), y_train[idx].to(device),
                                   label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(model, x_test, y_test)
        print(json.dumps({"model": name, "epoch": epoch + 1, "test_accuracy": acc, "elapsed_s": round(time.time() - start, 1)}), flush=True)
    model.eval().cpu()
    x_test = x_test.cpu()
    meta = {"format": "noisesearch-classifier", "architecture": name, "test_accuracy": f"{acc:.4f}",
            "train_args": json.dumps({"epochs": epochs, "seed": seed, "batch": batch, "lr": lr})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / f"{name}.safetensors"), metadata=meta)
    result = {"model": name, "test_accuracy": acc}
    if name == "evaluator-resnet":
        with torch.no_grad():
            feats = torch.cat([model.features(x_test[i:i + 1000]) for i in range(0, len(x_test), 1000)]).double().numpy()
        np.savez(out_dir / "evaluator-resnet.test-stats.npz", mu=feats.mean(0), sigma=np.cov(feats, rowvar=False),
                 count=np.array(len(feats)))
        result["reference_stats"] = str(out_dir / "evaluator-resnet.test-stats.npz")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out-dir", type=Path, default=CKPT, help="where to write the checkpoints (default: the shipped ones)")
    ap.add_argument("--only", choices=sorted(CLASSIFIERS), default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    names = [args.only] if args.only else sorted(CLASSIFIERS)
    results = [train_one(n, args.epochs, args.seed, 128, 3e-3, args.device, args.out_dir) for n in names]
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""`python -m noisesearch_research.recheck RUN_DIR`: recompute a sweep's held-out metrics from results.jsonl and
compare them with its metrics.csv, independently of metrics.py and report.py.

Everything here is written again from the documented definitions, sharing no code with metrics.py: the
preprocessing (the test images' pipeline: the 28x28 content clamped to [-1, 1], padded to 32x32 with -1, in
torch), the evaluator's forward pass (the checkpoint loaded afresh), FID (through the eigenvalues of S1 S2, not
a matrix square root), IS, k-NN precision/recall (k = 3; reference: the first m test images of each class, m =
that class's generated count), accuracy, log-probability and within-class diversity (scipy's cdist). It only
shares the sweep's definition of which rows belong to the run (sweep.units_of).

It computes every metric twice: from each row's raw tensor, which must agree with metrics.csv to float noise,
and from its 8-bit PNG, which must agree to within the effect of 8-bit rounding (TOL_PNG). It prints both
comparisons as a Markdown table (also written to RUN_DIR/recheck.md) and exits 1 if either fails.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from scipy.spatial.distance import cdist

CKPT = Path(__file__).resolve().parents[2] / "checkpoints"
K = 3
METRICS = ["fid", "inception_score", "precision", "recall", "accuracy", "evaluator_logprob", "diversity"]
# metrics.csv vs this file's computation from the same raw tensors: float noise only (float32 forward passes in
# other batch sizes, another FID algorithm)
TOL_TENSOR = {"fid": 1e-3, "inception_score": 1e-5, "precision": 1e-9, "recall": 1e-9, "accuracy": 1e-9,
              "evaluator_logprob": 1e-5, "diversity": 1e-5}
# ... and from the PNGs: 8-bit rounding of the content moves each pixel by at most 1/255 of the range. Measured on
# docs/study (1,740 samples) the mean FID moves by at most 0.007, IS by 0.008, diversity by 0.005; the quick sweep
# (4 samples per seed) by 0.036 / 0.002 / 0.009; a rank-based metric can move by one sample of a set. Bounds on
# the mean over seeds in units of the metric (precision, recall, accuracy: in samples of the set).
TOL_PNG = {"fid": 0.1, "inception_score": 0.05, "precision": 1.0, "recall": 1.0, "accuracy": 1.0,
           "evaluator_logprob": 0.02, "diversity": 0.02}
COUNTED = ("precision", "recall", "accuracy")  # tolerances in samples of one seed's set


def _pad(x28: torch.Tensor) -> torch.Tensor:
    return F.pad(x28, (2, 2, 2, 2), value=-1.0)


def sample(row: dict, source: str) -> torch.Tensor:
    """(1, 32, 32) float32 as the evaluator should judge it."""
    if source == "tensor":
        t = torch.frombuffer(bytearray(base64.b64decode(row["tensor"]["b64"])), dtype=torch.float32).view(1, 32, 32)
        return _pad(t[:, 2:30, 2:30].clamp(-1.0, 1.0))
    img = Image.open(io.BytesIO(base64.b64decode(row["png_b64"])))
    assert img.size == (28, 28) and img.mode == "L", (img.size, img.mode)
    a = torch.tensor(np.array(img), dtype=torch.float32)[None]
    return _pad(a / 127.5 - 1.0)


class Net:
    def __init__(self):
        from noisesearch_worker.classifiers import EvaluatorResNet
        self.net = EvaluatorResNet()
        self.net.load_state_dict(load_file(str(CKPT / "evaluator-resnet.safetensors")))
        self.net.eval()
        st = np.load(CKPT / "evaluator-resnet.test-stats.npz")
        self.mu, self.sigma = st["mu"].astype(np.float64), st["sigma"].astype(np.float64)

    def __call__(self, x: torch.Tensor):
        f, lp = [], []
        with torch.no_grad():
            for i in range(0, len(x), 256):
                h = self.net.features(x[i:i + 256])
                f.append(h.double().numpy())
                lp.append(torch.log_softmax(self.net.head(h).double(), 1).numpy())
        return np.concatenate(f), np.concatenate(lp)


def fid(f: np.ndarray, mu_r: np.ndarray, s_r: np.ndarray) -> float:
    mu, s = f.mean(0), np.cov(f, rowvar=False)
    ev = np.linalg.eigvals(s @ s_r)  # tr sqrt(S1 S2) = sum of sqrt of its (real, >= 0) eigenvalues
    return float(((mu - mu_r) ** 2).sum() + np.trace(s) + np.trace(s_r) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum())


def prec_rec(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    if len(real) <= K or len(fake) <= K:
        return math.nan, math.nan
    r_real = np.partition(cdist(real, real), K, axis=1)[:, K]
    r_fake = np.partition(cdist(fake, fake), K, axis=1)[:, K]
    d = cdist(fake, real)
    return float(np.mean((d <= r_real).any(1))), float(np.mean((d.T <= r_fake).any(1)))


def diversity(f: np.ndarray, y: np.ndarray) -> float:
    vals = []
    for c in sorted(set(y.tolist())):
        g = f[y == c]
        if len(g) > 1:
            d = cdist(g, g)
            vals.append(d[np.triu_indices(len(g), 1)].mean())
    return float(np.mean(vals)) if vals else math.nan


class Reference:
    def __init__(self, net: Net):
        from noisesearch_worker.data import load_split
        self.x, y = load_split("test")
        self.y = y.numpy()
        self.net = net

    def features(self, y: np.ndarray) -> np.ndarray:
        idx = np.concatenate([np.flatnonzero(self.y == c)[:int((y == c).sum())] for c in sorted(set(y.tolist()))])
        return self.net(self.x[idx])[0]


def set_metrics(net: Net, ref: Reference, f: np.ndarray, lp: np.ndarray, y: np.ndarray) -> dict:
    p = np.exp(lp)
    py = p.mean(0)
    kl = [float(np.sum(q * (np.log(q + 1e-12) - np.log(py + 1e-12)))) for q in p]
    pr = prec_rec(ref.features(y), f)
    return {"fid": fid(f, net.mu, net.sigma), "inception_score": float(np.exp(np.mean(kl))), "precision": pr[0],
            "recall": pr[1], "accuracy": float(np.mean(lp.argmax(1) == y)),
            "evaluator_logprob": float(np.mean(lp[np.arange(len(y)), y])), "diversity": diversity(f, y)}


def mean_std(v: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds of the seeds where the metric is defined (NaN, NaN when none is)."""
    a = [x for x in v if not math.isnan(x)]
    if not a:
        return math.nan, math.nan
    return float(np.mean(a)), (float(np.std(a, ddof=1)) if len(a) > 1 else 0.0)


def recompute(run: Path, source: str, net: Net | None = None, ref: Reference | None = None) -> dict[str, dict]:
    """{cell key: {metric_mean, metric_std, fid_pooled, n_per_seed}} from results.jsonl, plus the real-data row."""
    from .config import parse_config
    from .sweep import units_of
    cfg = parse_config(json.loads((run / "config.json").read_text()))
    wanted = {u["unit"] for u in units_of(cfg)}
    net = net or Net()
    ref = ref or Reference(net)
    rows, seen = [], set()
    for line in (run / "results.jsonl").read_bytes().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r["unit"] in wanted and (r["unit"], r["index"]) not in seen:
            seen.add((r["unit"], r["index"]))
            rows.append(r)
    by = defaultdict(list)
    for r in rows:
        by[(r["cell"], r["seed"])].append(r)
    out = {}
    for cell in cfg.cells:
        per = defaultdict(list)
        pooled_f, pooled_lp, pooled_y = [], [], []
        for s in cfg.seeds:
            rs = by[(cell.key, s)]
            if not rs:
                continue
            f, lp = net(torch.stack([sample(r, source) for r in rs]))
            y = np.array([r["class"] for r in rs])
            for k, v in set_metrics(net, ref, f, lp, y).items():
                per[k].append(v)
            pooled_f.append(f), pooled_lp.append(lp), pooled_y.append(y)
        if not pooled_f:
            continue
        rec = {"n_per_seed": len(by[(cell.key, cfg.seeds[0])])}
        for k, v in per.items():
            rec[f"{k}_mean"], rec[f"{k}_std"] = mean_std(v)
        pooled = set_metrics(net, ref, np.concatenate(pooled_f), np.concatenate(pooled_lp), np.concatenate(pooled_y))
        rec["fid_pooled"], rec["precision_pooled"], rec["recall_pooled"] = pooled["fid"], pooled["precision"], pooled["recall"]
        out[cell.key] = rec
    # real test images: per seed, samples_per_class of each class, disjoint blocks from the end of the split
    per = defaultdict(list)
    spc = cfg.samples_per_class
    for si in range(len(cfg.seeds)):
        idx = np.concatenate([np.flatnonzero(ref.y == c)[::-1][si * spc:(si + 1) * spc] for c in cfg.classes])
        f, lp = net(ref.x[idx])
        for k, v in set_metrics(net, ref, f, lp, ref.y[idx]).items():
            per[k].append(v)
    out["real"] = {"n_per_seed": spc * len(cfg.classes)}
    for k, v in per.items():
        out["real"][f"{k}_mean"], out["real"][f"{k}_std"] = mean_std(v)
    return out


def compare(table: dict[str, dict], mine: dict[str, dict], tol: dict[str, float],
            seeds: int) -> tuple[dict[str, float], list[str]]:
    """Largest |difference| per column (precision, recall, accuracy in samples of the set: 1/n per seed, 1/(n
    seeds) pooled), and the differences over tolerance (plus metrics.csv's 6-significant-figure rounding)."""
    worst: dict[str, float] = defaultdict(float)
    bad = []
    for cell, m in mine.items():
        t = table.get(cell)
        if t is None:
            bad.append(f"{cell}: not in metrics.csv")
            continue
        for col, b in m.items():
            metric = next((x for x in METRICS if col.startswith(x + "_")), None)
            if metric is None or col not in t:
                continue
            a = float(t[col]) if t[col] != "" else math.nan
            if math.isnan(a) and math.isnan(b):
                continue
            unit = 1.0
            if metric in COUNTED:
                unit = 1.0 / (m["n_per_seed"] * (seeds if col.endswith("_pooled") else 1))
            d = abs(a - b) / unit
            worst[col] = max(worst[col], d)
            # a pooled set is `seeds` sets: 1 sample in 30 of each may cross a k-NN boundary under rounding
            limit = tol[metric] * (seeds if metric in COUNTED and col.endswith("_pooled") else 1)
            if not d <= limit + 1e-5 * abs(b) / unit:
                bad.append(f"{cell} {col}: metrics.csv {a:.6g}, recomputed {b:.6g}")
    return dict(worst), bad


def main(argv=None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        sys.stderr.write("usage: python -m noisesearch_research.recheck RUN_DIR\n")
        return 2
    run = Path(args[0])
    table = {r["cell"]: r for r in csv.DictReader(open(run / "metrics.csv"))}
    net = Net()
    ref = Reference(net)
    lines = [f"# Independent recomputation of {run.name}/metrics.csv", "",
             "`python -m noisesearch_research.recheck RUN_DIR` (noisesearch_research/recheck.py): every metric "
             "recomputed from results.jsonl without metrics.py, from the raw tensors and from the PNGs. Largest "
             "|metrics.csv − recomputed| over all cells (precision, recall, accuracy in samples of one seed's set; "
             "pooled columns in samples of the pooled set):", "",
             "| column | from raw tensors | tolerance | from PNGs | tolerance |", "|---|---|---|---|---|"]
    results = {}
    failures = []
    for source, tol in (("tensor", TOL_TENSOR), ("png", TOL_PNG)):
        mine = recompute(run, source, net, ref)
        worst, bad = compare(table, mine, tol, len(json.loads((run / 'config.json').read_text()).get('seeds', [0])))
        results[source] = worst
        failures += [f"[{source}] {b}" for b in bad]
    for col in results["tensor"]:
        metric = next(m for m in METRICS if col.startswith(m))
        lines.append(f"| {col} | {results['tensor'][col]:.3g} | {TOL_TENSOR[metric]:g} | "
                     f"{results['png'].get(col, math.nan):.3g} | {TOL_PNG[metric]:g} |")
    lines += ["", f"**{'FAILED' if failures else 'agrees'}**" + (": " + "; ".join(failures[:20]) if failures else ""), ""]
    text = "\n".join(lines)
    (run / "recheck.md").write_text(text)
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Held-out metrics, in one place: the evaluator ResNet plays Inception's part (as torch-fidelity does).

Everything the evaluator judges goes through one preprocessing function, `evaluator_view`, inside
`Evaluator.__call__`: the pipeline the test images went through (`noisesearch_worker.data.load_split`),
i.e. a 28x28 picture in [-1, 1] padded to 32x32 with an exact -1 border. A generated 1x32x32 sample has
generated content in its 2-pixel border (in docs/study above -0.28 somewhere in 1 % of the samples); the evaluator judges its
28x28 content (the picture the PNG shows), clamped to [-1, 1] and re-padded with -1. The raw tensor is
judged at float precision; the 8-bit PNG of the same sample gives the same metrics to within 8-bit
rounding (tests/test_metrics.py, `noisesearch_research.recheck`).

- FID: Fréchet distance between Gaussians fitted to evaluator features, against the shipped statistics
  of the test split (checkpoints/evaluator-resnet.test-stats.npz).
- IS: exp(E_x KL(p(y|x) || p(y))) from the evaluator's class posterior (one split).
- Precision / recall on k-NN manifolds (Kynkäänniemi et al., 2019; k = 3) in evaluator feature space,
  against the evaluator features of test images chosen deterministically: for each conditioning class, the
  first m test images of that class in file order, m = the number of generated samples of that class, so
  the reference set has exactly as many images, class by class, as the generated set.
- Accuracy: the evaluator's argmax equals the conditioning class.
- Evaluator log-probability of the conditioning class (from the same forward pass).
- Diversity: mean pairwise feature distance within a class (the reference test images' value alongside).
None of these is ever seen by a search (the search verifiers are the verifier CNN's).
"""
from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import linalg

CHECKPOINTS = Path(os.environ.get("NOISESEARCH_CHECKPOINTS", Path(__file__).resolve().parents[2] / "checkpoints"))
PAD = 2  # the test images' border: noisesearch_worker.data.PAD (28 -> 32)
CONTENT = 28


# ---- pure metric functions (numpy in, float out) ----

def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) (the pytorch-fid formula, same regularisation)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean posterior of the set."""
    p = np.asarray(probs, dtype=np.float64)
    py = p.mean(0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(py + eps))).sum(1)
    return float(np.exp(kl.mean()))


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every point to its k-th nearest neighbour in the same set (itself excluded)."""
    d = _pairwise(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019): precision = share of fakes inside the real manifold (union of balls
    around each real of radius its k-NN distance); recall = share of reals inside the fake manifold."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if len(real) <= k or len(fake) <= k:
        return float("nan"), float("nan")
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = _pairwise(fake, real)  # [fake, real]
    precision = (d <= r_real[None, :]).any(1).mean()
    recall = (d.T <= r_fake[None, :]).any(1).mean()
    return float(precision), float(recall)


def class_diversity(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean pairwise L2 distance between samples of the same class, averaged over classes (a direct view of
    mode collapse that, unlike k-NN recall, does not saturate on small sets)."""
    f, y = np.asarray(features, np.float64), np.asarray(labels)
    per_class = []
    for c in np.unique(y):
        x = f[y == c]
        if len(x) >= 2:
            d = _pairwise(x, x)
            per_class.append(d[np.triu_indices(len(x), 1)].mean())
    return float(np.mean(per_class)) if per_class else float("nan")


def spearman(a, b) -> float:
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


# ---- samples ----

def evaluator_view(x: np.ndarray) -> np.ndarray:
    """What the evaluator judges of (..., 32, 32) samples in [-1, 1]: the test images' pipeline, i.e. the 28x28
    content clamped to [-1, 1] and padded with an exact -1 border. The identity on test images (their border
    is -1 and their values are in range); on a generated sample it discards the generated border."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-2:] != (CONTENT + 2 * PAD,) * 2:
        raise ValueError(f"samples must be (..., {CONTENT + 2 * PAD}, {CONTENT + 2 * PAD}), got {x.shape}")
    out = np.full(x.shape, -1.0, dtype=np.float32)
    out[..., PAD:-PAD, PAD:-PAD] = np.clip(x[..., PAD:-PAD, PAD:-PAD], -1.0, 1.0)
    return out


def decode_sample(row: dict, source: str = "auto") -> np.ndarray:
    """A results.jsonl row's sample as float32 (1, 32, 32): the raw tensor (`source` "tensor", or "auto" when the
    server sent it) or the 8-bit PNG (`source` "png", or "auto" without a tensor), which shows the 28x28 picture
    and is padded with -1 exactly as the test images are. Either way, what the evaluator judges of it is
    `evaluator_view` of this (applied by `Evaluator`)."""
    if source not in ("auto", "tensor", "png"):
        raise ValueError(f"source must be auto, tensor or png, got {source!r}")
    t = row.get("tensor")
    if source == "tensor" or (source == "auto" and t):
        if not t:
            raise ValueError(f"row {row.get('unit')!r} has no raw tensor (the request did not get return.raw_tensor)")
        return np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").reshape(t["shape"]).astype(np.float32)
    from PIL import Image
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["png_b64"]))).convert("L"), dtype=np.float32)
    if img.shape != (CONTENT, CONTENT):
        raise ValueError(f"row {row.get('unit')!r}: PNG is {img.shape[1]}x{img.shape[0]}, expected {CONTENT}x{CONTENT} "
                         "(a sweep asks for png_upscale 1)")
    x = img / 127.5 - 1.0
    return np.pad(x, PAD, constant_values=-1.0)[None].astype(np.float32)


# ---- the evaluator ----

class Evaluator:
    """The evaluator ResNet: features (96-d) and class posteriors of (N, 1, 32, 32) samples in [-1, 1], each
    judged through `evaluator_view` (generated samples and test images alike)."""

    def __init__(self, checkpoints: Path = CHECKPOINTS):
        import torch
        from safetensors.torch import load_file
        from noisesearch_worker.classifiers import EvaluatorResNet
        self.torch = torch
        self.net = EvaluatorResNet()
        self.net.load_state_dict(load_file(str(checkpoints / "evaluator-resnet.safetensors")), strict=True)
        self.net.eval().requires_grad_(False)
        stats = np.load(checkpoints / "evaluator-resnet.test-stats.npz")
        self.ref_mu, self.ref_sigma = stats["mu"].astype(np.float64), stats["sigma"].astype(np.float64)

    def __call__(self, x: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        feats, probs = [], []
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                xb = torch.from_numpy(evaluator_view(x[i:i + batch]))
                f = self.net.features(xb)
                feats.append(f.double().numpy())
                probs.append(torch.softmax(self.net.head(f).double(), 1).numpy())
        return np.concatenate(feats), np.concatenate(probs)

    @lru_cache(maxsize=16)
    def reference_features(self, counts: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Evaluator features of the first `m` test images of each class `c` (file order), for (c, m) in `counts`."""
        x, y = _test_split()
        idx = np.concatenate([np.flatnonzero(y == c)[:m] for c, m in counts])
        return self(x[idx])[0]


@lru_cache(maxsize=1)
def _test_split() -> tuple[np.ndarray, np.ndarray]:
    from noisesearch_worker.data import load_split
    x, y = load_split("test")
    return x.numpy(), y.numpy()


@dataclass
class SetMetrics:
    n: int
    n_reference: int  # test images in the precision/recall reference: = n, class by class
    fid: float
    inception_score: float
    precision: float
    recall: float
    accuracy: float
    evaluator_logprob: float  # mean log p(conditioning class) under the evaluator
    diversity: float
    reference_diversity: float  # the same statistic of the reference test images


def set_metrics(ev: Evaluator, feats: np.ndarray, probs: np.ndarray, labels: np.ndarray, k: int = 3) -> SetMetrics:
    """All held-out metrics of one set of generated samples (features and posteriors from `ev`, conditioning
    labels). Precision/recall use exactly as many test images of each conditioning class as the set has samples
    of that class (NaN when either set has k points or fewer)."""
    labels = np.asarray(labels)
    mu, sigma = gaussian_stats(feats)
    classes, counts = np.unique(labels, return_counts=True)
    ref_counts = tuple((int(c), int(m)) for c, m in zip(classes, counts))
    ref = ev.reference_features(ref_counts)
    prec, rec = precision_recall(ref, feats, k)
    ref_labels = np.repeat(classes, counts)
    logp = np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300))
    return SetMetrics(n=len(feats), n_reference=len(ref), fid=fid_from_stats(mu, sigma, ev.ref_mu, ev.ref_sigma),
                      inception_score=inception_score(probs), precision=prec, recall=rec,
                      accuracy=float((probs.argmax(1) == labels).mean()), evaluator_logprob=float(logp.mean()),
                      diversity=class_diversity(feats, labels), reference_diversity=class_diversity(ref, ref_labels))

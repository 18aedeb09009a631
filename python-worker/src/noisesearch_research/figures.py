"""Figures in the style of the paper's scaling plots: each metric against total NFEs (search + final, log
scale), one line per algorithm / verifier, mean ± std over seeds as error bars; and sample grids."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PANELS = [("fid", "FID ↓ (evaluator features)"), ("inception_score", "IS ↑ (evaluator posterior)"),
          ("precision", "precision ↑ (k=3)"), ("recall", "recall ↑ (k=3)"),
          ("diversity", "within-class diversity (evaluator features)"), ("accuracy", "evaluator accuracy ↑"),
          ("evaluator_logprob", "evaluator log p(class) ↑ (held out)"), ("verifier_score", "search verifier's score ↑")]


def _save(fig, out: Path, stem: str) -> list[str]:
    files = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        files.append(p.name)
    plt.close(fig)
    return files


def scaling_figure(cells: list[dict], groups: list[str], baseline: str | None, out: Path, stem: str,
                   title: str, real: dict | None = None) -> list[str]:
    """cells: metrics.csv rows (dicts with group, nfes_total, <metric>_mean, <metric>_std)."""
    fig, axes = plt.subplots(2, 4, figsize=(19, 8.2))
    cmap = plt.get_cmap("tab10")
    order = ([baseline] if baseline in groups else []) + [g for g in groups if g != baseline]
    for ax, (metric, name) in zip(axes.flat, PANELS):
        for i, g in enumerate(order):
            pts = sorted((c for c in cells if c["group"] == g), key=lambda c: c["nfes_total"])
            xs = [c["nfes_total"] for c in pts]
            ys = [c.get(f"{metric}_mean", np.nan) for c in pts]
            es = [c.get(f"{metric}_std", np.nan) for c in pts]
            if not pts or all(np.isnan(y) for y in ys):
                continue
            style = dict(color="black", ls="--", marker="s") if g == baseline else dict(color=cmap(i % 10), marker="o")
            ax.errorbar(xs, ys, yerr=es, capsize=3, lw=1.6, ms=5, label=g, **style)
        if real is not None and not np.isnan(real.get(f"{metric}_mean", np.nan)):
            ax.axhline(real[f"{metric}_mean"], color="grey", ls=":", lw=1.5, label="real test images (same count)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("total NFEs per sample (search + final)")
        ax.set_title(name)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(labels) - 1) // 4), 1, 0.97))
    return _save(fig, out, stem)


def sample_grid(rows_by_cell: list[tuple[str, list[np.ndarray]]], out: Path, stem: str, title: str) -> list[str]:
    """rows_by_cell: [(row label, [one (1,32,32) sample per class])] -> a grid, one row per budget."""
    nr = len(rows_by_cell)
    nc = max(len(s) for _, s in rows_by_cell)
    fig, axes = plt.subplots(nr, nc, figsize=(nc * 0.8 + 2.2, nr * 0.85 + 0.6), squeeze=False)
    for r, (label, samples) in enumerate(rows_by_cell):
        for c in range(nc):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(samples):
                ax.imshow(samples[c][0, 2:-2, 2:-2], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, stem)

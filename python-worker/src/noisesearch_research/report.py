"""Metrics, figures and report.md of a sweep's run folder, from results.jsonl and the evaluator alone.

`python -m noisesearch_research.report RUN_DIR` (or `npm run sweep -- CONFIG --report-only`) rebuilds them.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import metrics as M
from .config import cell_label, parse_config, solver_label

METRICS = ["fid", "inception_score", "precision", "recall", "diversity", "accuracy", "verifier_score",
           "evaluator_logprob"]


def load_rows(run: Path) -> tuple[dict, list[dict], list]:
    """The run's config, the rows of results.jsonl that belong to it (in file order), and its cells."""
    raw = json.loads((run / "config.json").read_text())
    cfg = parse_config(raw)
    from .sweep import units_of
    wanted = {u["unit"] for u in units_of(cfg)}
    rows, seen = [], set()
    with open(run / "results.jsonl", "rb") as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            k = (r["unit"], r["index"])
            if r["unit"] in wanted and k not in seen:  # a unit rerun after a torn write counts once
                seen.add(k)
                rows.append(r)
    return raw, rows, cfg


def verifier_score(row: dict) -> float:
    """The search verifier's own score of the final sample: its selection verifier's score (mean over the
    ensemble's members when several select)."""
    names = row.get("selection_verifiers") or [v for v, _ in row["spec"]["verifiers"]["verifiers"]]
    vals = [row["scores"][n] for n in names if n in row["scores"]]
    return float(np.mean(vals)) if vals else float("nan")


def _mean_std(xs: list[float]) -> tuple[float, float]:
    a = np.asarray([x for x in xs if not (isinstance(x, float) and math.isnan(x))], float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def compute_metrics(rows: list[dict], cfg, ev: M.Evaluator | None = None,
                    source: str = "auto") -> tuple[list[dict], dict]:
    """One dict per cell: metrics per seed, then mean and std over seeds, plus pooled over all seeds.
    `source`: judge each sample's raw tensor ("auto": when the row has one) or its PNG ("png")."""
    ev = ev or M.Evaluator()
    x = np.stack([M.decode_sample(r, source) for r in rows]) if rows else np.zeros((0, 1, 32, 32), np.float32)
    feats, probs = ev(x) if len(x) else (np.zeros((0, 96)), np.zeros((0, 10)))
    labels = np.array([r["class"] for r in rows])
    by_cell: dict[str, list[int]] = defaultdict(list)
    outputs_per_unit: dict[str, int] = defaultdict(int)
    for i, r in enumerate(rows):
        by_cell[r["cell"]].append(i)
        outputs_per_unit[r["unit"]] += 1
    out = []
    for cell in cfg.cells:
        idx = by_cell.get(cell.key, [])
        spec = cell.spec
        rec = {"cell": cell.key, "group": cell.group, "label": cell_label(spec), "kind": spec["kind"],
               "algorithm": spec["algorithm"], "algorithm_label": spec["label"],
               "params": json.dumps(spec["params"], sort_keys=True), "budget": spec["budget"],
               "verifier": spec["verifiers"]["label"], "search_solver": solver_label(spec["search_solver"]),
               "final_solver": solver_label(spec["final_solver"]) if spec["final_solver"] else "",
               "n_samples": len(idx)}
        if not idx:
            out.append(rec)
            continue
        cr = [rows[i] for i in idx]
        rec["nfes_search"] = float(np.mean([r["nfes"]["search"] for r in cr]))
        rec["nfes_final"] = float(np.mean([r["nfes"]["final"] for r in cr]))
        rec["nfes_total"] = float(np.mean([r["nfes"]["total"] for r in cr]))
        rec["wall_s_per_request"] = float(np.mean([r["wall_s"] for r in cr]))
        rec.update(compute_costs(cr, outputs_per_unit))
        per_seed: dict[str, list[float]] = defaultdict(list)
        seeds = sorted({r["seed"] for r in cr})
        for s in seeds:
            j = np.array([i for i in idx if rows[i]["seed"] == s])
            m = M.set_metrics(ev, feats[j], probs[j], labels[j])
            for k in ("fid", "inception_score", "precision", "recall", "accuracy", "evaluator_logprob", "diversity",
                      "reference_diversity", "n_reference"):
                per_seed[k].append(getattr(m, k))
            per_seed["verifier_score"].append(float(np.mean([verifier_score(rows[i]) for i in j])))
        rec["seeds"] = len(seeds)
        for k in METRICS:
            rec[f"{k}_mean"], rec[f"{k}_std"] = _mean_std(per_seed[k])
        pooled = M.set_metrics(ev, feats[idx], probs[idx], labels[idx])
        rec["reference_diversity"] = float(np.mean(per_seed["reference_diversity"]))
        rec["reference_per_seed"] = int(np.mean(per_seed["n_reference"]))
        rec["fid_pooled"] = pooled.fid
        rec["precision_pooled"], rec["recall_pooled"] = pooled.precision, pooled.recall
        rec["per_seed"] = {k: v for k, v in per_seed.items()}
        out.append(rec)
    out.append(real_data_row(ev, cfg))
    return out, {"features": feats, "probs": probs}


COST_COLS = ["verifier_calls_per_sample", "verifier_s_per_sample", "wall_s_per_sample", "server_wall_s_per_sample",
             "nfes_unspent"]


def compute_costs(cell_rows: list[dict], outputs_per_unit: dict[str, int]) -> dict:
    """A cell's compute beside its NFEs, per sample: verifier calls (samples scored x verifiers) and their wall
    time (the worker's measure), the request's wall time seen by the client (verifiers, solves and gRPC all
    included) and by the orchestrator, and the NFEs an upper-bound plan left unspent. A request with several
    outputs (the batched baseline) shares its costs equally among them, as its NFEs."""
    def mean(f):
        return float(np.mean([f(r) / outputs_per_unit[r["unit"]] for r in cell_rows]))
    acc = lambda r: r.get("accounting", {})  # noqa: E731 -- MessageToDict leaves out zero fields
    return {"verifier_calls_per_sample": mean(lambda r: int(acc(r).get("verifier_calls", 0))),
            "verifier_s_per_sample": mean(lambda r: float(acc(r).get("verifier_seconds", 0.0))),
            "wall_s_per_sample": mean(lambda r: r["wall_s"]),
            "server_wall_s_per_sample": mean(lambda r: r["server_wall_s"]),
            "nfes_unspent": mean(lambda r: int(acc(r).get("unspent_nfes", 0)))}


COSTS = {"nfes": "nfes_total", "wall": "wall_s_per_sample"}


def compute_ranking(cells: list[dict]) -> list[dict]:
    """Which curve reaches random search's verifier score most cheaply, with compute counted as NFEs and as wall
    time including verifiers. For each cell of the random-search curve (the target) and every other curve: the
    cheapest cell of that curve whose mean verifier score is at least the target's, on each cost axis, its
    cost as a ratio of the target's, and the curve's rank on that axis (1 = cheapest; curves that never reach
    the target are not ranked; equal costs rank the higher score first)."""
    run = [c for c in cells if c.get("n_samples") and c["kind"] in ("search", "baseline")]
    rand = next((c["group"] for c in run if c["kind"] == "search" and c["algorithm"] == "random"), None)
    if rand is None:
        return []
    curves = list(dict.fromkeys(c["group"] for c in run))
    out = []
    for t in sorted((c for c in run if c["group"] == rand), key=lambda c: c["nfes_total"]):
        rows = []
        for g in curves:
            reach = [c for c in run if c["group"] == g and c["verifier_score_mean"] >= t["verifier_score_mean"]]
            row = {"target": t["label"], "target_nfes": t["nfes_total"], "target_score": t["verifier_score_mean"],
                   "target_wall_s": t["wall_s_per_sample"], "curve": g}
            for axis, key in COSTS.items():
                best = min(reach, key=lambda c: (c[key], -c["verifier_score_mean"]), default=None)
                row[f"by_{axis}_cell"] = best["label"] if best else ""
                row[f"by_{axis}_nfes"] = best["nfes_total"] if best else float("nan")
                row[f"by_{axis}_wall_s"] = best["wall_s_per_sample"] if best else float("nan")
                row[f"by_{axis}_score"] = best["verifier_score_mean"] if best else float("nan")
                row[f"by_{axis}_cost_ratio"] = best[key] / t[key] if best else float("nan")
            rows.append(row)
        for axis in COSTS:
            ranked = sorted((r for r in rows if r[f"by_{axis}_cell"]), key=lambda r: (r[f"by_{axis}_cost_ratio"],
                                                                                    -r[f"by_{axis}_score"]))
            for i, r in enumerate(ranked):
                r[f"rank_{axis}"] = i + 1
        out += rows
    return out


RANKING_COLS = ["target", "target_nfes", "target_score", "target_wall_s", "curve"] + \
    [f"by_{a}_{k}" for a in COSTS for k in ("cell", "nfes", "wall_s", "score", "cost_ratio")] + [f"rank_{a}" for a in COSTS]


def real_data_row(ev: M.Evaluator, cfg) -> dict:
    """The same metrics of real test images in the same numbers (per seed: samples_per_class images of each
    class, disjoint blocks from the end of the split, never in the precision/recall reference): the level
    that data itself reaches at this sample size."""
    x, y = M._test_split()
    spc = cfg.samples_per_class
    per_seed: dict[str, list[float]] = defaultdict(list)
    for si in range(len(cfg.seeds)):
        idx = np.concatenate([np.flatnonzero(y == c)[::-1][si * spc:(si + 1) * spc] for c in cfg.classes])
        f, p = ev(x[idx])
        m = M.set_metrics(ev, f, p, y[idx])
        for k in ("fid", "inception_score", "precision", "recall", "accuracy", "evaluator_logprob", "diversity"):
            per_seed[k].append(getattr(m, k))
    rec = {"cell": "real", "group": "real test images", "label": "real test images (same count per class)",
           "kind": "real", "n_samples": len(cfg.seeds) * spc * len(cfg.classes), "seeds": len(cfg.seeds)}
    for k in METRICS:
        rec[f"{k}_mean"], rec[f"{k}_std"] = _mean_std(per_seed.get(k, []))
    return rec


def rank_correlations(rows: list[dict]) -> list[dict]:
    """Spearman rho between verifiers over the candidates of requests that returned candidate scores:
    per request (mean, std over requests) and pooled over every candidate."""
    pairs = defaultdict(lambda: {"per_request": [], "a": [], "b": []})
    for r in rows:
        cands = r.get("candidates")
        if not cands:
            continue
        names = sorted({n for c in cands for n in c["scores"]})
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                av = [c["scores"].get(a, np.nan) for c in cands]
                bv = [c["scores"].get(b, np.nan) for c in cands]
                key = (r["cell"], r["group"], a, b)
                pairs[key]["per_request"].append(M.spearman(av, bv))
                # pooled: ranks within the request's class would mix classes; pool raw scores per class
                pairs[key]["a"].append(av)
                pairs[key]["b"].append(bv)
    out = []
    for (cell, group, a, b), v in pairs.items():
        pr = [x for x in v["per_request"] if not math.isnan(x)]
        pooled = M.spearman(np.concatenate(v["a"]), np.concatenate(v["b"]))
        out.append({"cell": cell, "group": group, "verifier_a": a, "verifier_b": b, "requests": len(pr),
                    "candidates": int(sum(len(x) for x in v["a"])),
                    "rho_mean": float(np.mean(pr)) if pr else float("nan"),
                    "rho_std": float(np.std(pr, ddof=1)) if len(pr) > 1 else float("nan"),
                    "rho_pooled": pooled})
    return out


CSV_COLS = ["cell", "group", "label", "kind", "algorithm", "algorithm_label", "params", "budget", "verifier",
            "search_solver", "final_solver", "n_samples", "seeds", "nfes_search", "nfes_final", "nfes_total"] + \
           [f"{k}_{s}" for k in METRICS for s in ("mean", "std")] + \
           ["reference_diversity", "reference_per_seed", "fid_pooled", "precision_pooled", "recall_pooled", "wall_s_per_request"] + \
           COST_COLS


def write_csv(path: Path, cells: list[dict], cols: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for c in cells:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in c.items() if k in cols})


def figure_sets(cfg, cells: list[dict]) -> list[tuple[str, str, list[str], str | None]]:
    """(stem, title, groups, baseline group): all curves; random search by verifier; algorithms with the
    first verifier; the NFEs-per-candidate trade-off (curves of one algorithm with other search solvers)."""
    specs = {c.group: c.spec for c in cfg.cells}
    groups = list(dict.fromkeys(c["group"] for c in cells if c.get("n_samples") and c["group"] in specs))
    base = next((g for g in groups if specs[g]["kind"] == "baseline"), None)
    default_solver = solver_label(cfg.raw.get("search_solver") and {
        "solver": cfg.raw["search_solver"]["solver"], "steps": cfg.raw["search_solver"]["steps"],
        **({"guidance": cfg.raw["search_solver"]["guidance"]} if "guidance" in cfg.raw["search_solver"] else {})})
    first_v = None
    for g in groups:
        if specs[g]["kind"] == "search":
            first_v = specs[g]["verifiers"]["label"] if first_v is None else first_v
    sets = [("scaling-all", "All curves", groups, base)]
    rnd = [g for g in groups if specs[g]["kind"] == "search" and specs[g]["algorithm"] == "random"]
    if rnd:
        sets.append(("scaling-verifiers", "Random search: supervised vs self-supervised verifier vs more denoising steps",
                     ([base] if base else []) + rnd, base))
    algos = [g for g in groups if specs[g]["kind"] == "search" and specs[g]["verifiers"]["label"] == first_v
             and solver_label(specs[g]["search_solver"]) == default_solver and not specs[g]["candidate_scores"]]
    if len({specs[g]["algorithm"] for g in algos}) > 1:
        sets.append(("scaling-algorithms", f"Algorithms at equal NFEs (verifier: {first_v})",
                     ([base] if base else []) + algos, base))
    other = [g for g in groups if specs[g]["kind"] == "search" and solver_label(specs[g]["search_solver"]) != default_solver]
    if other:
        fam = {(specs[g]["algorithm"], specs[g]["params"].get("n")) for g in other}
        trade = [g for g in groups if specs[g]["kind"] == "search" and (specs[g]["algorithm"], specs[g]["params"].get("n")) in fam
                 and specs[g]["verifiers"]["label"] == first_v]
        sets.append(("scaling-nfes-per-candidate", "NFEs per search candidate (search solver) at equal total NFEs",
                     ([base] if base else []) + trade, base))
    return sets


def _fmt(v, d=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{d}f}"


def build_report(run: Path, ev: M.Evaluator | None = None) -> dict:
    from . import figures as F
    run = Path(run)
    raw, rows, cfg = load_rows(run)
    cells, arrays = compute_metrics(rows, cfg, ev)
    write_csv(run / "metrics.csv", cells, CSV_COLS)
    rhos = rank_correlations(rows)
    write_csv(run / "rank-correlations.csv", rhos,
              ["cell", "group", "verifier_a", "verifier_b", "requests", "candidates", "rho_mean", "rho_std", "rho_pooled"])
    ranking = compute_ranking(cells)
    write_csv(run / "compute-ranking.csv", ranking, RANKING_COLS)
    (run / "metrics.json").write_text(json.dumps({"cells": cells, "rank_correlations": rhos, "compute_ranking": ranking},
                                                 indent=1, default=float))
    figdir = run / "figures"
    figdir.mkdir(exist_ok=True)
    figs = []
    for stem, title, groups, base in figure_sets(cfg, cells):
        F.scaling_figure(cells, groups, base, figdir, stem, title,
                         real=next((c for c in cells if c["kind"] == "real"), None))
        figs.append((stem, title))
    # sample grids: one per curve, a row per budget, one sample per class (first seed, index 0)
    grids = []
    index = {(r["cell"], r["class"]): i for i, r in reversed(list(enumerate(rows)))
             if r["seed"] == cfg.seeds[0] and r["index"] == 0}
    for gi, g in enumerate(dict.fromkeys(c["group"] for c in cells if c.get("n_samples") and c["kind"] != "real")):
        gcells = sorted((c for c in cells if c["group"] == g and c.get("n_samples")), key=lambda c: c["nfes_total"])
        grid_rows = []
        for c in gcells:
            samples = [M.decode_sample(rows[index[(c["cell"], k)]]) for k in cfg.classes if (c["cell"], k) in index]
            if samples:
                grid_rows.append((f"{c['nfes_total']:.0f} NFEs\n{json.loads(c['params']) if c['kind'] == 'search' else c['search_solver']}", samples))
        if grid_rows:
            stem = f"samples-{gi:02d}"
            F.sample_grid(grid_rows, figdir, stem, f"{g}: one sample per class (seed {cfg.seeds[0]}), rows by budget")
            grids.append((stem, g))
    write_markdown(run, raw, cfg, cells, rhos, figs, grids, len(rows), ranking)
    return {"cells": cells, "rank_correlations": rhos, "compute_ranking": ranking}


def write_markdown(run: Path, raw: dict, cfg, cells, rhos, figs, grids, n_rows: int, ranking=()) -> None:
    L = [f"# Sweep report: {cfg.name}", ""]
    if raw.get("description"):
        L += [raw["description"], ""]
    n_per_seed = len(cfg.classes) * cfg.samples_per_class
    L += [f"{len(cfg.cells)} cells × {len(cfg.seeds)} seeds × {len(cfg.classes)} classes × {cfg.samples_per_class} "
          f"samples per class = {n_rows} samples ({n_per_seed} per cell and seed). Metrics are computed per seed on the "
          f"{n_per_seed} samples of that seed and shown as mean ± std over the {len(cfg.seeds)} seeds; FID is also given "
          f"pooled over all seeds. All held-out metrics use the evaluator ResNet (never a search verifier): FID against the "
          f"test split's statistics, IS from its class posterior, precision/recall on k-NN manifolds (k = 3) against "
          f"exactly as many test images of each conditioning class as there are samples of that class ({n_per_seed} "
          f"per seed), accuracy and log-probability of the conditioning class. The evaluator judges every sample "
          f"as the test images were prepared: its 28×28 content (the PNG's picture), clamped to [-1, 1] and padded "
          f"to 32×32 with -1 (`metrics.evaluator_view`); the generated 2-pixel border is not judged.", "",
          "FID of a few dozen samples in a 96-d feature space is strongly biased upwards (the bias shrinks like 1/N), "
          "so compare FIDs only between cells of the same sample count, as here, and read the ± as the seed-to-seed noise.",
          ""]
    L += ["## Metrics per cell", "",
          "| curve | point | NFEs (search + final) | FID ↓ | FID pooled | IS ↑ | precision ↑ | recall ↑ | diversity | accuracy ↑ | verifier score ↑ |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: (c["kind"] == "real", c["group"], c.get("nfes_total", 0))):
        if not c.get("n_samples"):
            L.append(f"| {c['group']} | {c['params'] if c['kind'] == 'search' else c['search_solver']} | not run | | | | | | | | |")
            continue
        pt = c["params"] if c["kind"] == "search" else c.get("search_solver", "")
        nfes = f"{c['nfes_total']:.0f} ({c['nfes_search']:.0f} + {c['nfes_final']:.0f})" if "nfes_total" in c else "–"
        L.append(f"| {c['group']} | {pt} | {nfes} | "
                 f"{_fmt(c['fid_mean'], 2)} ± {_fmt(c['fid_std'], 2)} | {_fmt(c.get('fid_pooled'), 2)} | "
                 f"{_fmt(c['inception_score_mean'], 2)} ± {_fmt(c['inception_score_std'], 2)} | "
                 f"{_fmt(c['precision_mean'], 2)} ± {_fmt(c['precision_std'], 2)} | "
                 f"{_fmt(c['recall_mean'], 2)} ± {_fmt(c['recall_std'], 2)} | "
                 f"{_fmt(c['diversity_mean'], 2)} ± {_fmt(c['diversity_std'], 2)} | "
                 f"{_fmt(c['accuracy_mean'], 2)} ± {_fmt(c['accuracy_std'], 2)} | "
                 f"{_fmt(c['verifier_score_mean'], 3)} ± {_fmt(c['verifier_score_std'], 3)} |")
    L += ["", "Diversity: mean pairwise evaluator-feature distance between samples of the same class. The last row "
              "is real test images in the same numbers per class and seed (disjoint from the precision/recall "
              "reference): the level data itself reaches at this sample size. Full table (with the evaluator's log-probability of the conditioning class, computed here from the same view of "
              "the sample as every other metric, the precision/recall reference size and wall times): "
              "[metrics.csv](metrics.csv).", ""]
    L += compute_section(cells, ranking)
    if rhos:
        L += ["## Rank agreement of verifiers over candidates", "",
              "Spearman ρ between two verifiers' scores of the same candidates, per request (mean ± std) and pooled "
              "over every candidate of the cell.", "",
              "| cell | verifiers | requests | candidates | ρ per request | ρ pooled |", "|---|---|---|---|---|---|"]
        for r in rhos:
            L.append(f"| {r['group']} | {r['verifier_a']} vs {r['verifier_b']} | {r['requests']} | {r['candidates']} | "
                     f"{_fmt(r['rho_mean'], 3)} ± {_fmt(r['rho_std'], 3)} | {_fmt(r['rho_pooled'], 3)} |")
        L.append("")
    L += ["## Scaling curves", ""]
    for stem, title in figs:
        L += [f"### {title}", "", f"![{title}](figures/{stem}.png)", "", f"([SVG](figures/{stem}.svg))", ""]
    L += ["## Samples per budget", ""]
    for stem, g in grids:
        L += [f"**{g}**", "", f"![{g}](figures/{stem}.png)", ""]
    L += ["## Config", "", "```json", json.dumps(raw, indent=2), "```", ""]
    (run / "report.md").write_text("\n".join(L))


def compute_section(cells: list[dict], ranking) -> list[str]:
    run = [c for c in cells if c.get("n_samples") and c["kind"] in ("search", "baseline") and "wall_s_per_sample" in c]
    if not run:
        return []
    L = ["## Compute: NFEs, verifier calls and wall time", "",
         "Per sample, mean over the cell's samples. Verifier calls are samples scored × verifiers; verifier seconds "
         "their wall time as the worker measures it; wall seconds the request's wall time as the sweep's client saw it "
         "(solves, verifiers, orchestrator and gRPC included; concurrent requests share the worker, so it also carries "
         "the load of the moment). The baseline's batched request shares its costs among its outputs.", "",
         "| curve | point | NFEs | verifier calls | verifier s | wall s | verifier score ↑ |", "|---|---|---|---|---|---|---|"]
    for c in sorted(run, key=lambda c: (c["group"], c["nfes_total"])):
        pt = c["params"] if c["kind"] == "search" else c.get("search_solver", "")
        L.append(f"| {c['group']} | {pt} | {c['nfes_total']:.0f} | {c['verifier_calls_per_sample']:.1f} | "
                 f"{_fmt(c['verifier_s_per_sample'], 3)} | {_fmt(c['wall_s_per_sample'], 3)} | "
                 f"{_fmt(c['verifier_score_mean'], 3)} |")
    L.append("")
    if ranking:
        L += ["### Cheapest way to reach random search's verifier score, by NFEs and by wall time", "",
              "For each random-search cell (target), each curve's cheapest cell whose mean verifier score is at least "
              "the target's: its NFEs and wall seconds per sample as a ratio of the target's, and the curve's rank on "
              "each axis (full table: [compute-ranking.csv](compute-ranking.csv)).", "",
              "| target (NFEs, score) | curve | by NFEs: NFEs (× target) | rank | by wall: wall s (× target) | rank |",
              "|---|---|---|---|---|---|"]
        for r in ranking:
            head = f"{r['target_nfes']:.0f}, {r['target_score']:.3f}"
            if not r["by_nfes_cell"]:
                L.append(f"| {head} | {r['curve']} | not reached | – | not reached | – |")
                continue
            L.append(f"| {head} | {r['curve']} | {r['by_nfes_nfes']:.0f} ({r['by_nfes_cost_ratio']:.2f}×) | "
                     f"{r['rank_nfes']} | {r['by_wall_wall_s']:.3f} ({r['by_wall_cost_ratio']:.2f}×) | {r['rank_wall']} |")
        L.append("")
    return L


def main(argv=None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        sys.stderr.write("usage: python -m noisesearch_research.report RUN_DIR\n")
        return 2
    build_report(Path(args[0]))
    sys.stderr.write(f"report: {Path(args[0]) / 'report.md'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

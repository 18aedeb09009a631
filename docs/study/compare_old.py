"""What changed between the shipped study's metrics (before issue 13) and the re-run's.

    python-worker/.venv/bin/python docs/study/compare_old.py OLD_METRICS_CSV RUN_DIR > docs/study/what-changed.csv

For every cell: the old shipped value (OLD_METRICS_CSV, computed from the PNGs by the metrics code of commit
297dc7a), the old code applied again to this run's PNGs (equal to the shipped value when the re-run's samples
are the shipped run's), the old code on this run's raw tensors (what a re-run before the fix reported: the
generated border judged), and the corrected value from RUN_DIR/metrics.csv. The old code is loaded from git, so
this script needs the repository's history.
"""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OLD_COMMIT = "297dc7a"
KEYS = ["fid", "inception_score", "precision", "recall", "diversity", "accuracy"]


def old_metrics_module():
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:python-worker/src/noisesearch_research/metrics.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_metrics.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_metrics", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_metrics"] = mod
    spec.loader.exec_module(mod)
    return mod


def main(old_csv: str, run: str) -> int:
    sys.path.insert(0, str(ROOT / "python-worker" / "src"))
    from noisesearch_research.report import load_rows
    OM = old_metrics_module()
    old = {r["cell"]: r for r in csv.DictReader(open(old_csv))}
    new = {r["cell"]: r for r in csv.DictReader(open(Path(run) / "metrics.csv"))}
    _, rows, cfg = load_rows(Path(run))
    ev = OM.Evaluator(ROOT / "python-worker" / "checkpoints")
    labels = np.array([r["class"] for r in rows])
    # the old study judged the PNGs; the old code on this run's raw tensors is what a re-run before the fix gave
    png_rows = [{k: v for k, v in r.items() if k != "tensor"} for r in rows]
    variants = {"old_code_png": ev(np.stack([OM.decode_sample(r) for r in png_rows])),
                "old_code_tensor": ev(np.stack([OM.decode_sample(r) for r in rows]))}
    by = defaultdict(list)
    for i, r in enumerate(rows):
        by[(r["cell"], r["seed"])].append(i)
    names = ["shipped", *variants, "new"]
    w = csv.writer(sys.stdout)
    w.writerow(["cell", "label", "nfes_total"] + [f"{k}_{s}" for k in KEYS for s in names])
    for cell in cfg.cells:
        per = defaultdict(list)
        for v, (feats, probs) in variants.items():
            for s in cfg.seeds:
                j = np.array(by[(cell.key, s)])
                if len(j) == 0:
                    continue
                m = OM.set_metrics(ev, feats[j], probs[j], labels[j])
                for k in KEYS:
                    per[(k, v)].append(getattr(m, k))
        o, n = old.get(cell.key, {}), new.get(cell.key, {})
        out = [cell.key, n.get("label", ""), n.get("nfes_total", "")]
        for k in KEYS:
            out += [o.get(f"{k}_mean", "")] + [f"{np.mean(per[(k, v)]):.6g}" if per[(k, v)] else "" for v in variants] \
                   + [n.get(f"{k}_mean", "")]
        w.writerow(out)
    o, n = old.get("real", {}), new.get("real", {})
    w.writerow(["real", n.get("label", ""), ""] + sum([[o.get(f"{k}_mean", ""), "", "", n.get(f"{k}_mean", "")] for k in KEYS], []))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""Sweep configs (JSON or YAML): schema validation with errors naming the key, and expansion into cells.

A cell is one point of a scaling curve: (model, algorithm + parameters, verifiers/ensemble, search solver,
final solver, budget). Each cell is sampled for every class x seed x sample index; every sample is one
search through the public API (the denoising-steps baseline batches a class's samples into one request).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALGORITHMS = {"random": ("n",), "zero-order": ("n", "k", "tau", "accept_non_improving", "max_rejections"),
              "paths": ("n", "m", "sigma_start", "delta_forward", "delta_backward", "backward_steps"),
              # beyond the paper (issue 10; search.proto documents each)
              "successive-halving": ("n", "rungs", "reduction", "free_lookahead"),
              "feynman-kac": ("k", "potential", "lambda", "resample_every", "ess_threshold", "eta"),
              "rollover-budget": ("nfes", "proposals_per_call", "eta", "initial_noises")}
SCALING_AXIS = {"random": "n", "zero-order": "k", "paths": "m", "successive-halving": "n", "feynman-kac": "k",
                "rollover-budget": "nfes"}
SOLVERS = ("heun", "euler")
ENSEMBLES = ("rank-average", "zscore-sum", "minmax-sum")


class ConfigError(ValueError):
    """A config error naming the offending key, e.g. `algorithms[1].vary.k: expected a list of integers >= 1`."""


def _err(key: str, msg: str) -> ConfigError:
    return ConfigError(f"{key}: {msg}")


def _keys(obj: Any, key: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise _err(key, f"expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _err(f"{key}.{unknown[0]}" if key else unknown[0], f"unknown key; allowed: {sorted(allowed)}")
    for r in sorted(required):
        if r not in obj:
            raise _err(f"{key}.{r}" if key else r, "required")
    return obj


def _int(v: Any, key: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _err(key, f"expected an integer >= {lo}, got {v!r}")
    return v


def _num(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _err(key, f"expected a number, got {v!r}")
    return float(v)


def _int_list(v: Any, key: str, lo: int = 0) -> list[int]:
    if not isinstance(v, list) or not v:
        raise _err(key, f"expected a non-empty list of integers >= {lo}, got {v!r}")
    return [_int(x, f"{key}[{i}]", lo) for i, x in enumerate(v)]


def _solver(v: Any, key: str) -> dict | None:
    if v is None:
        return None
    _keys(v, key, {"solver", "steps", "guidance"}, {"solver", "steps"})
    if v["solver"] not in SOLVERS:
        raise _err(f"{key}.solver", f"expected one of {list(SOLVERS)}, got {v['solver']!r}")
    out = {"solver": v["solver"], "steps": _int(v["steps"], f"{key}.steps", 1)}
    if "guidance" in v:
        out["guidance"] = _num(v["guidance"], f"{key}.guidance")
    return out


def _verifier_set(v: Any, key: str) -> dict:
    """"name" | {"label", "verifiers": ["a", ["b", 0.5]], "ensemble"} -> {"label", "verifiers": [[name, w]], "ensemble"}"""
    if isinstance(v, str):
        return {"label": v, "verifiers": [[v, 0.0]], "ensemble": "rank-average"}
    _keys(v, key, {"label", "verifiers", "ensemble"}, {"verifiers"})
    if not isinstance(v["verifiers"], list) or not v["verifiers"]:
        raise _err(f"{key}.verifiers", "expected a non-empty list of names or [name, weight]")
    names = []
    for i, x in enumerate(v["verifiers"]):
        if isinstance(x, str):
            names.append([x, 0.0])
        elif isinstance(x, list) and len(x) == 2 and isinstance(x[0], str):
            names.append([x[0], _num(x[1], f"{key}.verifiers[{i}][1]")])
        else:
            raise _err(f"{key}.verifiers[{i}]", f"expected a name or [name, weight], got {x!r}")
    ens = v.get("ensemble", "rank-average")
    if ens not in ENSEMBLES:
        raise _err(f"{key}.ensemble", f"expected one of {list(ENSEMBLES)}, got {ens!r}")
    label = v.get("label") or "+".join(n for n, _ in names)
    if not isinstance(label, str):
        raise _err(f"{key}.label", "expected a string")
    return {"label": label, "verifiers": names, "ensemble": ens}


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def short_hash(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:12]


@dataclass
class Cell:
    """One point of a curve. `spec` is what identifies it (its hash is the cell key)."""
    spec: dict
    key: str = ""
    group: str = ""     # the curve it belongs to: "<label> / <verifier label>"

    def __post_init__(self):
        self.key = short_hash(self.spec)


@dataclass
class SweepConfig:
    raw: dict
    name: str
    models: list[str]
    classes: list[int]
    samples_per_class: int
    seeds: list[int]
    concurrency: int
    cells: list[Cell] = field(default_factory=list)
    worker: dict = field(default_factory=dict)
    client_id: str = "sweep"
    grid_budgets: list[int] = field(default_factory=list)


TOP_KEYS = {"name", "description", "models", "classes", "num_classes", "samples_per_class", "seeds", "concurrency",
            "search_solver", "final_solver", "verifiers", "algorithms", "baseline", "worker", "client_id",
            "grid_nfes", "candidate_scores"}
ALGO_KEYS = {"algorithm", "label", "params", "vary", "budgets", "verifiers", "search_solver", "search_solvers",
             "final_solver", "candidate_scores"}


def load_config(path: str | Path) -> SweepConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON: {e}") from None
    try:
        return parse_config(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_config(raw: Any) -> SweepConfig:
    _keys(raw, "", TOP_KEYS, {"name", "algorithms"})
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise _err("name", "expected a non-empty string")
    models = raw.get("models", ["sit-fmnist"])
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise _err("models", f"expected a non-empty list of model names, got {models!r}")
    num_classes = _int(raw.get("num_classes", 10), "num_classes", 1)
    classes = raw.get("classes", "all")
    if classes == "all":
        classes = list(range(num_classes))
    else:
        classes = _int_list(classes, "classes")
        bad = [c for c in classes if c >= num_classes]
        if bad:
            raise _err("classes", f"class {bad[0]} out of range 0..{num_classes - 1}")
    spc = _int(raw.get("samples_per_class", 1), "samples_per_class", 1)
    seeds = _int_list(raw.get("seeds", [0]), "seeds")
    if len(set(seeds)) != len(seeds):
        raise _err("seeds", "duplicate seeds")
    conc = _int(raw.get("concurrency", 2), "concurrency", 1)
    worker = raw.get("worker", {})
    _keys(worker, "worker", {"max_batch", "threads"})
    client_id = raw.get("client_id", "sweep")
    search_solver = _solver(raw.get("search_solver"), "search_solver")
    final_solver = _solver(raw.get("final_solver"), "final_solver")
    verifiers_raw = raw.get("verifiers", ["classifier-logit"])
    if not isinstance(verifiers_raw, list) or not verifiers_raw:
        raise _err("verifiers", "expected a non-empty list")
    default_verifiers = [_verifier_set(v, f"verifiers[{i}]") for i, v in enumerate(verifiers_raw)]
    top_cands = bool(raw.get("candidate_scores", False))

    cfg = SweepConfig(raw=raw, name=name, models=models, classes=classes, samples_per_class=spc, seeds=seeds,
                      concurrency=conc, worker=worker, client_id=client_id)
    if not isinstance(raw["algorithms"], list):
        raise _err("algorithms", "expected a list")
    labels_seen: set[str] = set()
    for ai, a in enumerate(raw["algorithms"]):
        key = f"algorithms[{ai}]"
        _keys(a, key, ALGO_KEYS, {"algorithm"})
        algo = a["algorithm"]
        if algo not in ALGORITHMS:
            raise _err(f"{key}.algorithm", f"expected one of {sorted(ALGORITHMS)}, got {algo!r}")
        label = a.get("label", algo)
        if label in labels_seen:
            raise _err(f"{key}.label", f"duplicate label {label!r}")
        labels_seen.add(label)
        params = a.get("params", {})
        _keys(params, f"{key}.params", set(ALGORITHMS[algo]))
        vary = a.get("vary")
        budgets = a.get("budgets")
        if (vary is None) == (budgets is None):
            raise _err(key, "give exactly one of `vary` (scaling-axis values, no budget) or `budgets` "
                            "(search NFE budgets, the server shrinks the scaling axis to fit)")
        points: list[tuple[dict, int]] = []
        if vary is not None:
            _keys(vary, f"{key}.vary", set(ALGORITHMS[algo]))
            if len(vary) != 1:
                raise _err(f"{key}.vary", "expected exactly one parameter, e.g. {\"k\": [1, 4, 16]}")
            (pname, values), = vary.items()
            for v in _int_list(values, f"{key}.vary.{pname}", 1):
                points.append(({**params, pname: v}, 0))
        else:
            axis = SCALING_AXIS[algo]
            if axis not in params:
                raise _err(f"{key}.params.{axis}", f"required with `budgets`: the largest {axis} the budget may shrink")
            for b in _int_list(budgets, f"{key}.budgets", 1):
                points.append((dict(params), b))
        vsets = ([_verifier_set(v, f"{key}.verifiers[{i}]") for i, v in enumerate(a["verifiers"])]
                 if "verifiers" in a else default_verifiers)
        if "search_solvers" in a:
            if not isinstance(a["search_solvers"], list) or not a["search_solvers"]:
                raise _err(f"{key}.search_solvers", "expected a non-empty list of solvers")
            solvers = [_solver(s, f"{key}.search_solvers[{i}]") for i, s in enumerate(a["search_solvers"])]
        else:
            solvers = [_solver(a.get("search_solver"), f"{key}.search_solver") if "search_solver" in a else search_solver]
        fsolver = _solver(a.get("final_solver"), f"{key}.final_solver") if "final_solver" in a else final_solver
        cands = bool(a.get("candidate_scores", top_cands))
        for model in models:
            for vs in vsets:
                for s in solvers:
                    for p, b in points:
                        spec = {"kind": "search", "model": model, "algorithm": algo, "label": label, "params": p,
                                "budget": b, "verifiers": vs, "search_solver": s, "final_solver": fsolver,
                                "candidate_scores": cands}
                        group = f"{label} / {vs['label']}"
                        if len(solvers) > 1 and s:
                            group += f" / {solver_label(s)}"
                        cfg.cells.append(Cell(spec, group=group))
    if "baseline" in raw:
        b = _keys(raw["baseline"], "baseline", {"label", "solver", "steps", "guidance", "batch"}, {"steps"})
        solver = b.get("solver", "heun")
        if solver not in SOLVERS:
            raise _err("baseline.solver", f"expected one of {list(SOLVERS)}, got {solver!r}")
        label = b.get("label", "more denoising steps")
        batch = b.get("batch", True)
        if not isinstance(batch, bool):
            raise _err("baseline.batch", "expected true or false")
        for model in models:
            for steps in _int_list(b["steps"], "baseline.steps", 1):
                s = {"solver": solver, "steps": steps}
                if "guidance" in b:
                    s["guidance"] = _num(b["guidance"], "baseline.guidance")
                spec = {"kind": "baseline", "model": model, "algorithm": "random", "label": label, "params": {"n": 1},
                        "budget": 0, "verifiers": default_verifiers[0], "search_solver": s, "final_solver": None,
                        "candidate_scores": False, "batch": batch}
                cfg.cells.append(Cell(spec, group=label))
    keys = [c.key for c in cfg.cells]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise _err("algorithms", f"two cells are identical (cell {dup}); remove the duplicate")
    if not cfg.cells:
        raise _err("algorithms", "the config has no cells")
    return cfg


def solver_label(s: dict | None) -> str:
    if not s:
        return "default"
    g = f" g{s['guidance']:g}" if "guidance" in s else ""
    return f"{s['solver'].capitalize()} {s['steps']}{g}"


def cell_label(spec: dict) -> str:
    p = ", ".join(f"{k}={v}" for k, v in spec["params"].items())
    b = f", budget {spec['budget']}" if spec["budget"] else ""
    if spec["kind"] == "baseline":
        return f"{spec['label']}: {solver_label(spec['search_solver'])}"
    return f"{spec['label']} ({p}{b}) / {spec['verifiers']['label']} / {solver_label(spec['search_solver'])}"

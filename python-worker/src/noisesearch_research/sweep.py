"""`npm run sweep -- CONFIG [--address HOST:PORT] [--out DIR]`: a budget sweep through the public gRPC API.

Every finished request appends its sample row(s) to <out>/results.jsonl (one row per sample, with its
recipe, plan, NFE account, verifier scores and the sample itself); a restart skips the units already
there, so a killed sweep loses nothing it finished. At the end it computes the held-out metrics
(metrics.csv), draws the figures and writes report.md (noisesearch_research.report).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict

from . import client as C
from .config import Cell, ConfigError, SweepConfig, cell_label, load_config

RESULTS = "results.jsonl"


def request_seed(seed: int, cls: int, index: int) -> int:
    """The request seed of sample `index` of class `cls` in replicate `seed`: the same in every cell
    (common random numbers across cells), a pure function of the three."""
    h = hashlib.sha256(f"noisesearch-sweep:{seed}:{cls}:{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _solver_msg(s: dict | None):
    if not s:
        return None
    return C.solver(s["solver"], s["steps"], s.get("guidance"))


def units_of(cfg: SweepConfig) -> list[dict]:
    """Every request of the sweep: {"unit": key, "cell": Cell, "class", "seed", "indices"}, ordered seed-major
    then sample index then class then cell, so that a sweep stopped early has every cell equally sampled."""
    units = []
    for seed in cfg.seeds:
        for i in range(cfg.samples_per_class):
            for cls in cfg.classes:
                for cell in cfg.cells:
                    batched = cell.spec["kind"] == "baseline" and cell.spec.get("batch", True)
                    if batched:
                        if i == 0:
                            # One request per (cell, seed, class): random search with num_outputs = N returns all
                            # N candidates, i.e. N i.i.d. samples (its key names the batch size: a config with
                            # more samples per class redoes these units).
                            units.append({"unit": f"{cell.key}:{seed}:{cls}:b{cfg.samples_per_class}", "cell": cell,
                                          "class": cls, "seed": seed, "indices": list(range(cfg.samples_per_class))})
                    else:
                        units.append({"unit": f"{cell.key}:{seed}:{cls}:{i}", "cell": cell, "class": cls,
                                      "seed": seed, "indices": [i]})
    return units


def build_request(unit: dict, client_id: str):
    spec = unit["cell"].spec
    n_out = len(unit["indices"])
    params = dict(spec["params"])
    seed = request_seed(unit["seed"], unit["class"], unit["indices"][0])
    if n_out > 1:
        params["n"] = n_out
        seed = request_seed(unit["seed"], unit["class"], -n_out)
    return C.request(
        algorithm=spec["algorithm"], params=params, class_label=unit["class"], model=spec["model"],
        verifiers=[tuple(v) for v in spec["verifiers"]["verifiers"]], ensemble=spec["verifiers"]["ensemble"],
        budget=spec["budget"], shrink_to_fit=spec["budget"] > 0, search_solver=_solver_msg(spec["search_solver"]),
        final_solver=_solver_msg(spec["final_solver"]), seed=seed, num_outputs=n_out, png=True, raw_tensor=True,
        candidate_scores=spec["candidate_scores"], client_id=client_id)


def rows_of(unit: dict, req, result, wall_s: float) -> list[dict]:
    spec = unit["cell"].spec
    acc = result.accounting
    n_out = len(result.outputs)
    if n_out != len(unit["indices"]):
        raise RuntimeError(f"unit {unit['unit']}: asked for {len(unit['indices'])} outputs, got {n_out}")
    plan = result.plan
    rows = []
    cands = None
    if spec["candidate_scores"]:
        cands = [{"id": c.id, "round": c.round, "kept": c.kept, "scores": C.scores_of(c)} for c in result.candidates]
    for idx, out in zip(unit["indices"], result.outputs):
        row = {
            "unit": unit["unit"], "cell": unit["cell"].key, "group": unit["cell"].group, "label": cell_label(spec),
            "spec": spec, "class": unit["class"], "seed": unit["seed"], "index": idx,
            "request_seed": str(req.seed),
            # per sample: a batched baseline request's NFEs are shared equally by its outputs
            "nfes": {"search": int(acc.search_nfes) // n_out, "final": int(acc.final_nfes) // n_out,
                     "total": int(acc.total_nfes) // n_out},
            "plan": {"algorithm": plan.algorithm, "n": plan.n, "k": plan.k, "m": plan.m, "rounds": plan.rounds,
                     "nfes_per_candidate": int(plan.nfes_per_candidate), "shrunk": plan.shrunk,
                     "final_reuses_search": plan.final_reuses_search, "search_nfes": int(plan.search_nfes),
                     "final_nfes": int(plan.final_nfes), "budget_nfes": int(plan.budget_nfes)},
            "accounting": MessageToDict(acc, preserving_proto_field_name=True),
            "scores": C.scores_of(out),
            "held_out": sorted(s.verifier for s in out.scores if s.held_out),
            "selection_verifiers": list(plan.selection_verifiers),
            "rank": out.rank, "candidate_id": out.candidate_id,
            "recipe": MessageToDict(out.recipe, preserving_proto_field_name=True),
            "request": MessageToDict(req, preserving_proto_field_name=True),
            "wall_s": round(wall_s, 4), "server_wall_s": round(result.wall_seconds, 4),
            "png_b64": base64.b64encode(out.png).decode(),
        }
        if out.tensor.raw_data:
            row["tensor"] = {"shape": list(out.tensor.shape), "b64": base64.b64encode(out.tensor.raw_data).decode()}
        if cands is not None and idx == unit["indices"][0]:
            row["candidates"] = cands
        rows.append(row)
    return rows


class ResultsFile:
    """Append-only JSONL; a torn last line (killed mid-write) is cut off on open."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.done: set[str] = set()
        if path.exists():
            data = path.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut != len(data):
                with open(path, "r+b") as f:
                    f.truncate(cut)
            units: dict[str, int] = {}
            for line in data[:cut].splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                units[row["unit"]] = units.get(row["unit"], 0) + 1
            self.done = set(units)
        self.f = open(path, "ab")

    def append(self, rows: list[dict]) -> None:
        blob = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows)
        with self.lock:
            self.f.write(blob)  # one write per unit: all its rows or (torn) none that parse
            self.f.flush()
            os.fsync(self.f.fileno())
            self.done.add(rows[0]["unit"])

    def close(self) -> None:
        self.f.close()


class ProgressBar:
    def __init__(self, total: int, done: int, stream=sys.stderr, enabled: bool = True):
        self.total, self.done, self.stream, self.enabled = total, done, stream, enabled
        self.start_done = done
        self.t0 = time.monotonic()
        self.failed = 0
        self.last = 0.0
        self.tty = stream.isatty()

    def update(self, n: int = 1, failed: int = 0, force: bool = False) -> None:
        self.done += n
        self.failed += failed
        now = time.monotonic()
        if not self.enabled or (not force and not self.tty and now - self.last < 10 and self.done < self.total):
            return
        self.last = now
        frac = self.done / max(1, self.total)
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        el = now - self.t0
        rate = (self.done - self.start_done) / el if el > 0 else 0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_s = f"{eta / 60:.1f} min" if eta != float("inf") else "?"
        fail = f"  {self.failed} failed" if self.failed else ""
        line = f"[{bar}] {self.done}/{self.total} requests  {el / 60:.1f} min  eta {eta_s}{fail}"
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        if self.tty and self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _set_pdeathsig():
    """The orchestrator child gets SIGTERM when the sweep dies (even by SIGKILL), and stops its worker."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def orchestrator_env(cfg: SweepConfig) -> dict:
    """Settings of the sweep's own local orchestrator. Its database is in memory: the sweep resumes from
    results.jsonl, and a shared data/noisesearch.db lost requests ("database is locked") when a second
    orchestrator ran from the same checkout."""
    return {"NOISESEARCH_MAX_RUNNING_JOBS": str(max(2, cfg.concurrency)),
            "NOISESEARCH_PYTHON": os.environ.get("NOISESEARCH_PYTHON", sys.executable),
            "NOISESEARCH_DB": ":memory:"}


@contextlib.contextmanager
def orchestrator(cfg: SweepConfig, address: str | None, out: Path, repo: Path | None = None):
    if address:
        yield address, None
        return
    env = orchestrator_env(cfg)
    tmp = None
    if cfg.worker:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(cfg.worker, tmp)
        tmp.close()
        env["NOISESEARCH_WORKER_ARGS"] = f"--config {tmp.name}"
    try:
        with C.local_orchestrator(repo_root=repo or C.REPO_ROOT, log_path=out / "orchestrator.log", env=env,
                                   preexec_fn=_set_pdeathsig) as (addr, token):
            yield addr, token
    finally:
        if tmp:
            os.unlink(tmp.name)


def run_sweep(cfg: SweepConfig, out: Path, address: str | None = None, progress: bool = True,
              max_units: int | None = None, report: bool = True, repo: Path | None = None,
              token: str | None = None) -> int:
    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.raw, indent=2) + "\n")
    results = ResultsFile(out / RESULTS)
    units = units_of(cfg)
    todo = [u for u in units if u["unit"] not in results.done]
    if max_units is not None:
        todo = todo[:max_units]
    log = sys.stderr
    log.write(f"sweep {cfg.name}: {len(cfg.cells)} cells, {len(units)} requests, {len(units) - len(todo)} already "
              f"done in {out / RESULTS}\n")
    failures = 0
    if todo:
        with orchestrator(cfg, address, out, repo) as (addr, local_token):
            log.write(f"public API at {addr}; concurrency {cfg.concurrency}\n")
            bar = ProgressBar(len(units), len(units) - len(todo), enabled=progress)
            cli = C.SearchClient(addr, token=local_token or token)
            stop = threading.Event()

            def one(unit):
                if stop.is_set():
                    return None
                req = build_request(unit, cfg.client_id)
                t0 = time.monotonic()
                res = cli.search(req)
                results.append(rows_of(unit, req, res, time.monotonic() - t0))
                return unit

            with ThreadPoolExecutor(cfg.concurrency) as pool:
                pending = set()
                it = iter(todo)
                try:
                    while True:
                        while len(pending) < cfg.concurrency * 2:
                            u = next(it, None)
                            if u is None:
                                break
                            pending.add(pool.submit(one, u))
                        if not pending:
                            break
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in finished:
                            e = f.exception()
                            if e is not None:
                                failures += 1
                                msg = e.details() if isinstance(e, grpc.RpcError) else str(e)
                                log.write(f"\nrequest failed: {msg}\n")
                                with open(out / "errors.log", "a") as ef:
                                    ef.write(f"{time.strftime('%FT%T')} {msg}\n")
                            bar.update(1, failed=int(e is not None))
                except KeyboardInterrupt:
                    stop.set()
                    log.write("\ninterrupted: finished requests are saved; rerun to resume\n")
                    raise
            cli.close()
    results.close()
    with open(out / "sessions.jsonl", "a") as f:  # one line per invocation: the sweep's wall time, resumes included
        f.write(json.dumps({"started": time.strftime("%FT%T", time.localtime(t_start)), "wall_s": round(time.time() - t_start, 1),
                            "requests_run": len(todo), "requests_failed": failures, "requests_total": len(units),
                            "concurrency": cfg.concurrency, "address": address or "local"}) + "\n")
    missing = {u["unit"] for u in units} - ResultsFile(out / RESULTS).done
    if report and failures == 0 and not missing:
        from .report import build_report
        build_report(out)
        log.write(f"report: {out / 'report.md'}\n")
    elif failures:
        log.write(f"{failures} requests failed (see {out / 'errors.log'}); rerun to retry them\n")
    elif missing:
        log.write(f"{len(missing)} requests not run yet; rerun to finish\n")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="npm run sweep --", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="sweep config (JSON or YAML), e.g. configs/sweeps/study.json")
    ap.add_argument("--address", help="public gRPC API of a running orchestrator (default: start a local one)")
    ap.add_argument("--repo", default=os.environ.get("NOISESEARCH_SWEEP_REPO") or None,
                    help="checkout whose src/main.ts runs the local orchestrator (default: $NOISESEARCH_SWEEP_REPO, "
                         "else this one)")
    ap.add_argument("--token", help="bearer token of the deployment at --address (default: $NOISESEARCH_TOKEN)")
    ap.add_argument("--out", help="run folder (default: runs/<config name>)")
    ap.add_argument("--quick", action="store_true", help="use the config's -quick sibling (study.json -> study-quick.json)")
    ap.add_argument("--concurrency", type=int, help="override the config's concurrency")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--no-report", action="store_true", help="skip metrics, figures and report at the end")
    ap.add_argument("--report-only", action="store_true", help="only (re)build metrics, figures and report from results.jsonl")
    args = ap.parse_args(argv)
    path = Path(args.config)
    if args.quick:
        path = path.with_name(f"{path.stem}-quick{path.suffix}")
    try:
        cfg = load_config(path)
    except ConfigError as e:
        sys.stderr.write(f"config error: {e}\n")
        return 2
    if args.concurrency:
        cfg.concurrency = args.concurrency
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    if args.report_only:
        from .report import build_report
        build_report(out)
        sys.stderr.write(f"report: {out / 'report.md'}\n")
        return 0
    return run_sweep(cfg, out, address=args.address, progress=not args.no_progress, report=not args.no_report,
                     repo=Path(args.repo).resolve() if args.repo else None, token=args.token)


if __name__ == "__main__":
    sys.exit(main())

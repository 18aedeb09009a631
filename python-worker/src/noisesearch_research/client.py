"""A small Python client for the public API (noisesearch.search.v1.Search), on the generated stubs.

    from noisesearch_research.client import SearchClient, random_search
    with SearchClient("127.0.0.1:50051", token=...) as c:
        result = c.search(random_search(n=8, class_label=7, budget=0, steps=10, guidance=1.0, png=True))
        c.image(result).save("best.png")

`local_orchestrator()` starts an orchestrator child process (which spawns the Python worker) on a free
port and stops it on exit, for scripts that have no deployment to talk to.
"""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import numpy as np

from noisesearch.search.v1 import search_pb2 as pb
from noisesearch.search.v1 import search_pb2_grpc as pb_grpc
from noisesearch.worker.v1 import worker_pb2 as wpb

REPO_ROOT = Path(__file__).resolve().parents[3]
MiB = 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
SOLVERS = {"heun": wpb.SOLVER_HEUN, "euler": wpb.SOLVER_EULER, "default": wpb.SOLVER_UNSPECIFIED}
ENSEMBLES = {"rank-average": pb.ENSEMBLE_RANK_AVERAGE, "zscore-sum": pb.ENSEMBLE_ZSCORE_SUM,
             "minmax-sum": pb.ENSEMBLE_MINMAX_SUM}


def solver(name: str = "default", steps: int = 0, guidance: float | None = None) -> wpb.SolverSettings:
    s = wpb.SolverSettings(solver=SOLVERS[name], steps=steps)
    if guidance is not None:
        s.guidance_scale = guidance
    return s


def request(*, algorithm: str = "random", params: dict | None = None, class_label: int | None = None,
            model: str = "", verifiers: list[str | tuple[str, float]] | None = None, ensemble: str = "rank-average",
            budget: int = 0, shrink_to_fit: bool = False, search_solver: wpb.SolverSettings | None = None,
            final_solver: wpb.SolverSettings | None = None, seed: int = 0, num_outputs: int = 1,
            png: bool = False, raw_tensor: bool = True, candidate_scores: bool = False,
            client_id: str = "") -> pb.SearchRequest:
    """Builds a SearchRequest; `params` are the algorithm's fields (random: n; zero_order: n, k, tau, ...)."""
    req = pb.SearchRequest(model=model, budget_nfes=budget, shrink_to_fit=shrink_to_fit, seed=seed,
                           num_outputs=num_outputs, client_id=client_id,
                           ensemble=ENSEMBLES[ensemble])
    if class_label is not None:
        req.condition.class_label = class_label
    algo = {"random": req.random, "zero-order": req.zero_order, "zero_order": req.zero_order,
            "paths": req.paths, "successive-halving": req.successive_halving, "successive_halving": req.successive_halving,
            "feynman-kac": req.feynman_kac, "feynman_kac": req.feynman_kac,
            "rollover-budget": req.rollover_budget, "rollover_budget": req.rollover_budget}.get(algorithm)
    if algo is None:
        raise ValueError(f"algorithm must be random, zero-order, paths, successive-halving, feynman-kac or rollover-budget, "
                         f"got {algorithm!r}")
    algo.SetInParent()
    for k, v in (params or {}).items():
        if isinstance(v, list):  # successive_halving.rungs
            getattr(algo, k).extend(v)
        elif k == "potential" and isinstance(v, str):  # feynman_kac: "max" | "difference" | "sum"
            setattr(algo, k, pb.FkPotential.Value(f"FK_POTENTIAL_{v.upper()}"))
        else:
            setattr(algo, k, v)
    for v in verifiers or []:
        name, weight = (v, 0.0) if isinstance(v, str) else v
        req.verifiers.add(name=name, weight=weight)
    if search_solver is not None:
        req.search_solver.CopyFrom(search_solver)
    if final_solver is not None:
        req.final_solver.CopyFrom(final_solver)
    req.__getattribute__("return").png = png
    getattr(req, "return").raw_tensor = raw_tensor
    getattr(req, "return").candidate_scores = candidate_scores
    return req


def random_search(n: int, class_label: int, budget: int = 0, steps: int = 10, guidance: float | None = None,
                  solver_name: str = "heun", **kw) -> pb.SearchRequest:
    return request(algorithm="random", params={"n": n}, class_label=class_label, budget=budget,
                   search_solver=solver(solver_name, steps, guidance), **kw)


def tensor_array(t: wpb.Tensor) -> np.ndarray:
    """A raw tensor of the result (little-endian float32, C order) as a NumPy array of its shape."""
    if t.dtype not in (wpb.DTYPE_FLOAT32,) and t.dtype != 0:
        raise ValueError(f"unsupported tensor dtype {wpb.DType.Name(t.dtype)}")
    return np.frombuffer(t.raw_data, dtype="<f4").reshape(tuple(t.shape)).copy()


def scores_of(output_or_candidate) -> dict[str, float]:
    return {s.verifier: s.score for s in output_or_candidate.scores}


class SearchClient:
    """Blocking client: search() runs one search and returns its Result (events go to on_event)."""

    def __init__(self, address: str, timeout_s: float | None = None, token: str | None = None):
        """`token`: a bearer token for deployments with access control (default: $NOISESEARCH_TOKEN)."""
        self.address = address
        token = token if token is not None else os.environ.get("NOISESEARCH_TOKEN", "")
        self.metadata = [("authorization", f"Bearer {token}")] if token else None
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.SearchStub(self.channel)
        self.timeout_s = timeout_s

    def wait_ready(self, timeout_s: float = 60) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout_s)

    def search(self, req: pb.SearchRequest, on_event: Callable[[pb.SearchEvent], None] | None = None) -> pb.Result:
        result = None
        for ev in self.stub.Search(req, timeout=self.timeout_s, metadata=self.metadata):
            if on_event:
                on_event(ev)
            if ev.HasField("result"):
                result = ev.result
        if result is None:
            raise RuntimeError("the search stream ended without a result")
        return result

    def plan(self, req: pb.SearchRequest) -> pb.Plan:
        return self.stub.PlanSearch(req, timeout=self.timeout_s, metadata=self.metadata)

    @staticmethod
    def image(result: pb.Result, rank: int = 0):
        """The PNG of an output as a PIL image (ask for return.png)."""
        from PIL import Image
        return Image.open(io.BytesIO(result.outputs[rank].png))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "SearchClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_orchestrator(repo_root: Path = REPO_ROOT, start_timeout_s: float = 300, log_path: Path | None = None,
                       env: dict | None = None, preexec_fn=None) -> Iterator[str]:
    """Starts `node -r ts-node/register/transpile-only src/main.ts` on a free port (it spawns the worker);
    yields (address, token): a fresh admin bearer token it accepts (NOISESEARCH_TOKENS); stops it (SIGTERM,
    then SIGKILL) on exit.
    The child stays in the caller's process group, so killing the group kills it and its worker too."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    token = secrets.token_hex(24)
    child_env = dict(os.environ, NOISESEARCH_GRPC_ADDRESS=address, NOISESEARCH_HTTP_PORT="0",
                     NOISESEARCH_TOKENS=f"{token}:admin",
                     NOISESEARCH_LOG_LEVEL=os.environ.get("NOISESEARCH_LOG_LEVEL", "warn"), **(env or {}))
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(["node", "-r", "ts-node/register/transpile-only", "src/main.ts"], cwd=repo_root,
                            env=child_env, stdout=log, stderr=log, preexec_fn=preexec_fn)
    try:
        channel = grpc.insecure_channel(address)
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the orchestrator exited with code {proc.returncode} while starting"
                                   + (f" (log: {log_path})" if log_path else ""))
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                break
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the orchestrator did not listen on {address} within {start_timeout_s}s")
        channel.close()
        yield address, token
    finally:
        if proc.poll() is None:
            proc.terminate()  # the orchestrator stops the worker it spawned
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log_path:
            log.close()

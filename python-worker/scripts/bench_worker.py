"""Worker benchmark: the raw forward throughput of each loaded model's network in-process (the limit, and how to
choose a model's `micro_batch`: the smallest batch at which it stops rising), then sample-NFEs per second of the
default model at batch 1, 16 and 64 over real gRPC, and the share of a denoise call's time spent in the network.

Run: npm run bench:worker   (or python scripts/bench_worker.py --steps 10 --repeats 3)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch.worker.v1 import worker_pb2 as pb  # noqa: E402
from noisesearch.worker.v1 import worker_pb2_grpc as rpc  # noqa: E402
from noisesearch_worker.config import WorkerConfig, build_engine  # noqa: E402
from noisesearch_worker.server import make_server  # noqa: E402


def packing(engine, steps: int) -> dict:
    """In-process, no gRPC: c concurrent Denoise calls of 4 samples against one call of 4c, interleaved; the
    forwards the network ran for each (the scheduler's packing) and the ratio of their times."""
    name = "sit-fmnist"
    sched = engine.compute.velocity[name]

    def call(tag: str, n: int) -> None:
        h = [t.handle for t in engine.initial_noises(pb.InitialNoisesRequest(namespace=tag, model=name,
                                                                             seeds=list(range(n)))).tensors]
        engine.denoise(pb.DenoiseRequest(namespace=tag, model=name, handles=h, conditions=[pb.Condition(class_label=1)],
                                         solver=pb.SolverSettings(solver=pb.SOLVER_EULER, steps=steps, guidance_scale=1.0),
                                         sigma_from=1.0, sigma_to=0.0, release_inputs=True))
        engine.store.release_all(tag)
    call("warm", 4)
    rows = []
    for c in (1, 4, 8, 16):
        f0, t0 = sched.forwards, time.perf_counter()
        threads = [threading.Thread(target=call, args=(f"c{i}", 4)) for i in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        concurrent_s, concurrent_f = time.perf_counter() - t0, sched.forwards - f0
        f0, t0 = sched.forwards, time.perf_counter()
        call("one", 4 * c)
        one_s, one_f = time.perf_counter() - t0, sched.forwards - f0
        rows.append({"concurrency": c, "concurrent_forwards": concurrent_f, "one_call_forwards": one_f,
                     "concurrent_seconds": round(concurrent_s, 3), "one_call_seconds": round(one_s, 3),
                     "ratio": round(one_s / concurrent_s, 3), "load_average": os.getloadavg()})
    return {"benchmark": "in-process-packing", "request": f"Denoise of 4 samples, Euler {steps}, guidance 1",
            "micro_batch": engine.models[name].micro_batch, "reproducibility": engine.reproducibility, "rows": rows}


def verifier_packing(repeats: int) -> dict:
    """In-process: 4 concurrent Score calls of 4 images (each its own prompt) against one call of 16, on tiny random
    releases of the text-to-image verifiers (ImageReward, CLIPScore: testing.make_tiny_flux) at micro-batch 16; the
    forwards each network ran, and the same 4 concurrent calls with the verifiers' runner removed (each call's
    networks run directly in its thread in fixed micro-batches, as before they joined the compute loop)."""
    import copy
    import tempfile
    from noisesearch_worker.testing.make_tiny_flux import MODEL, make
    with tempfile.TemporaryDirectory() as tmp:
        cfg = WorkerConfig.load(str(make(Path(tmp))))
        cfg.max_batch = 16
        engine = build_engine(cfg)
    names = ["image-reward", "clip-score"]
    prompts = ["a red car", "a photo of a cat", "a dog", "the red photo"]
    handles = [t.handle for t in engine.initial_noises(pb.InitialNoisesRequest(model=MODEL, seeds=range(16))).tensors]

    def score(hs, prompt):
        engine.score(pb.ScoreRequest(model=MODEL, handles=hs, verifiers=names, conditions=[pb.Condition(prompt=prompt)]))

    def concurrent():
        threads = [threading.Thread(target=score, args=(handles[4 * i:4 * i + 4], prompts[i])) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ir = engine.verifiers["image-reward"]
    for p in prompts:
        score(handles[:1], p)  # warm up; the prompts' text encodings are cached from here on
    nets = {"image-reward network": ir.reward_rows, "CLIP image tower": engine.verifiers["clip-score"].clip.image_rows}

    def timed(fn):
        best, forwards = None, None
        for _ in range(repeats):
            f0 = {k: engine.compute.scheduler_of(f).forwards for k, f in nets.items()}
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if best is None or dt < best:
                best = dt
                forwards = {k: engine.compute.scheduler_of(f).forwards - f0[k] for k, f in nets.items()}
        return best, forwards
    concurrent_s, concurrent_f = timed(concurrent)
    one_s, one_f = timed(lambda: score(handles, prompts[0]))
    served = {n: engine.verifiers[n] for n in names}
    for n in names:  # the direct path: no runner, each call's forwards in its own thread under the device lock
        direct = copy.copy(served[n])
        direct.runner = None
        engine.verifiers[n] = direct
    direct_s, _ = timed(concurrent)
    engine.verifiers.update(served)
    return {"benchmark": "verifier-packing", "verifiers": names, "micro_batch": 16,
            "request": "Score of 4 images with its own prompt, 4 concurrent, vs one Score of 16 (tiny random releases)",
            "concurrent_seconds": round(concurrent_s, 4), "one_call_seconds": round(one_s, 4),
            "direct_concurrent_seconds": round(direct_s, 4), "concurrent_forwards": concurrent_f,
            "one_call_forwards": one_f, "ratio": round(one_s / concurrent_s, 3),
            "packed_vs_direct": round(direct_s / concurrent_s, 3), "load_average": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per raw-forward measurement")
    args = ap.parse_args()
    engine = build_engine(WorkerConfig(device=args.device))
    limit = {"benchmark": "raw-forward", "device": str(engine.device), "load_average": os.getloadavg(), "models": {}}
    for name, m in engine.models.items():
        rows_out = []
        for b in sorted({1, 2, 4, 8, 16, 32, 64, m.micro_batch}):
            cond = m.conditions([0] * b if m.condition_kind == "class_label" else ["a photo"] * b)
            x = torch.randn(b, *m.sample_shape, device=m.device)
            rows, _ = m.eval_rows(x, 0.5, cond, 1.0)
            with torch.inference_mode():
                m.net(*rows)  # warm-up
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    m.net(*rows)
                    n += 1
                if m.device.type == "cuda":
                    torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / n
            rows_out.append({"rows": b, "rows_per_second": round(b / dt, 1), "ms_per_forward": round(1000 * dt, 2)})
        limit["models"][name] = {"micro_batch": m.micro_batch, "rows": rows_out,
                                 "at_micro_batch": next(r for r in rows_out if r["rows"] == m.micro_batch)}
    print(json.dumps(limit, indent=1), flush=True)
    print(json.dumps(packing(engine, args.steps), indent=1), flush=True)
    print(json.dumps(verifier_packing(args.repeats), indent=1), flush=True)
    server, port, _ = make_server(engine, "127.0.0.1:0", 64 << 20)
    server.start()
    stub = rpc.WorkerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    model = "sit-fmnist"
    solver = pb.SolverSettings(solver=pb.SOLVER_EULER, steps=args.steps, guidance_scale=1.0)
    rows = []
    for batch in args.batches:
        walls, model_s, server_s, nfes = [], [], [], 0
        for r in range(args.repeats + 1):
            handles = [t.handle for t in stub.InitialNoises(pb.InitialNoisesRequest(model=model, seeds=range(batch))).tensors]
            t0 = time.perf_counter()
            resp = stub.Denoise(pb.DenoiseRequest(model=model, handles=handles, conditions=[pb.Condition(class_label=3)],
                                                  solver=solver, sigma_from=1.0, sigma_to=0.0, release_inputs=True))
            wall = time.perf_counter() - t0
            stub.Release(pb.ReleaseRequest(all=True))
            if r == 0:
                continue  # warm-up
            walls.append(wall)
            model_s.append(resp.model_seconds)
            server_s.append(resp.wall_seconds)
            nfes = resp.nfes
        wall = statistics.median(walls)
        rows.append({"batch": batch, "nfes_per_call": nfes, "sample_nfes_per_second": round(nfes / wall, 1),
                     "median_call_seconds": round(wall, 4),
                     "forward_share_of_call": round(statistics.median(model_s) / wall, 3),
                     "forward_share_of_server_time": round(statistics.median(model_s) / statistics.median(server_s), 3)})
    server.stop(0)
    print(json.dumps({"benchmark": "worker-denoise", "device": str(engine.device), "micro_batch": engine.models[model].micro_batch,
                      "reproducibility": engine.reproducibility, "load_average": os.getloadavg(),
                      "solver": f"euler x{args.steps}", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

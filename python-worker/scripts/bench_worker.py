"""Worker benchmark: sample-NFEs per second of the default model at batch 1, 16 and 64, over real gRPC,
and the share of a denoise call's wall time spent in the network's forward (the rest is overhead).

Run: npm run bench:worker   (or python scripts/bench_worker.py --steps 10 --repeats 3)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch.worker.v1 import worker_pb2 as pb  # noqa: E402
from noisesearch.worker.v1 import worker_pb2_grpc as rpc  # noqa: E402
from noisesearch_worker.config import WorkerConfig, build_engine  # noqa: E402
from noisesearch_worker.server import make_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    engine = build_engine(WorkerConfig(device=args.device))
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
    print(json.dumps({"benchmark": "worker-denoise", "device": str(engine.device), "micro_batch": engine.limits.max_batch,
                      "solver": f"euler x{args.steps}", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

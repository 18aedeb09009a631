"""Record tests/data/replay-golden.json: recipes made by the worker and the sha256 of what they replay to.

Run once on a given code version (`python tests/make_replay_golden.py`); test_replay_golden.py then checks that
every later version Materializes these recipes to the same float32 bytes and PNG bytes (users hold recipes).
The fixture was recorded on the code before the step-level scheduler (commit 297dc7a), CPU, fp32, max_batch 16.
Float32 bits also depend on the CPU's instruction set, so the fixture names its machine and the test skips on
another. To re-record on a new machine from that old code (first done 2026-12-01, when the CI machine changed):
    git worktree add --detach /tmp/replay-old 6d58cd4
    python-worker/.venv/bin/python /tmp/replay-old/python-worker/tests/make_replay_golden.py
    cp /tmp/replay-old/python-worker/tests/data/replay-golden.json python-worker/tests/data/
    python-worker/.venv/bin/python python-worker/tests/make_replay_golden.py --stamp   # adds this machine
"""
import hashlib
import json
import sys
from pathlib import Path

from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch.worker.v1 import worker_pb2 as pb  # noqa: E402
from noisesearch_worker.config import WorkerConfig, build_engine  # noqa: E402

OUT = Path(__file__).resolve().parent / "data" / "replay-golden.json"


def digest(engine, ns, info):
    raw = engine.fetch(pb.FetchRequest(namespace=ns, handles=[info.handle])).tensors[0].raw_data
    png = engine.decode(pb.DecodeRequest(namespace=ns, model="sit-fmnist", handles=[info.handle])).png[0]
    return {"recipe": json_format.MessageToDict(info.recipe), "float32_sha256": hashlib.sha256(raw).hexdigest(),
            "png_sha256": hashlib.sha256(png).hexdigest()}


def main():
    if "--stamp" in sys.argv:
        from conftest import machine
        fixture = json.loads(OUT.read_text())
        OUT.write_text(json.dumps({**fixture, "machine": machine()}, indent=1) + "\n")
        print(f"stamped {OUT} with {machine()}")
        return
    engine = build_engine(WorkerConfig(device="cpu"))
    ns = "golden"
    cases = []
    noises = engine.initial_noises(pb.InitialNoisesRequest(namespace=ns, model="sit-fmnist", seeds=[11, 12, 13])).tensors
    h = [t.handle for t in noises]
    # guided, the default solver (Heun 10, guidance 1.5), three samples of different classes in one call
    guided = engine.denoise(pb.DenoiseRequest(namespace=ns, model="sit-fmnist", handles=h, sigma_from=1.0, sigma_to=0.0,
                                              conditions=[pb.Condition(class_label=c) for c in (7, 2, 9)],
                                              capture_sigmas=[0.4]))
    cases += [dict(name=f"denoise-heun10-g1.5-{i}", **digest(engine, ns, t)) for i, t in enumerate(guided.tensors)]
    cases.append(dict(name="capture-x-prediction-0.4", **digest(engine, ns, guided.captures[0].tensors[1])))
    # unguided Euler 10
    euler = engine.denoise(pb.DenoiseRequest(namespace=ns, model="sit-fmnist", handles=h[:2], sigma_from=1.0, sigma_to=0.0,
                                             conditions=[pb.Condition(class_label=3)],
                                             solver=pb.SolverSettings(solver=pb.SOLVER_EULER, steps=10, guidance_scale=1.0)))
    cases += [dict(name=f"denoise-euler10-g1-{i}", **digest(engine, ns, t)) for i, t in enumerate(euler.tensors)]
    # x-prediction (guided and unguided) of a noise
    for g in (1.5, 1.0):
        xp = engine.x_prediction(pb.XPredictionRequest(namespace=ns, model="sit-fmnist", handles=[h[2]], sigma=0.6,
                                                       conditions=[pb.Condition(class_label=5)], guidance_scale=g))
        cases.append(dict(name=f"x-prediction-g{g}", **digest(engine, ns, xp.tensors[0])))
    # zero-order neighbour, denoised
    nb = engine.neighbours(pb.ZeroOrderNeighboursRequest(namespace=ns, pivot=h[0], tau=0.95, seeds=[101])).tensors
    d = engine.denoise(pb.DenoiseRequest(namespace=ns, model="sit-fmnist", handles=[nb[0].handle], sigma_from=1.0,
                                         sigma_to=0.0, conditions=[pb.Condition(class_label=7)]))
    cases.append(dict(name="neighbour-denoise-heun10-g1.5", **digest(engine, ns, d.tensors[0])))
    # search over paths: forward-noise a sample to sigma 0.6 and denoise it again (Euler 4, unguided; then guided Heun)
    fw = engine.forward_noise(pb.ForwardNoiseRequest(namespace=ns, handles=[guided.tensors[0].handle], sigma_from=0.0,
                                                     sigma_to=0.6, seeds=[555])).tensors
    cases.append(dict(name="forward-noise", **digest(engine, ns, fw[0])))
    for settings, label in ((pb.SolverSettings(solver=pb.SOLVER_EULER, steps=4, guidance_scale=1.0), "euler4-g1"),
                            (pb.SolverSettings(solver=pb.SOLVER_HEUN, steps=4, guidance_scale=1.5), "heun4-g1.5")):
        r = engine.denoise(pb.DenoiseRequest(namespace=ns, model="sit-fmnist", handles=[fw[0].handle], sigma_from=0.6,
                                             sigma_to=0.0, conditions=[pb.Condition(class_label=7)], solver=settings))
        cases.append(dict(name=f"forward-then-denoise-{label}", **digest(engine, ns, r.tensors[0])))
    from conftest import machine
    OUT.write_text(json.dumps({"note": "recorded on the code before the step-level scheduler (commit 297dc7a), CPU, "
                                       "fp32, max_batch 16", "machine": machine(), "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()

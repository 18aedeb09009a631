"""GPU check of the paper's models (issue 6, item 7). Prints one JSON document.

1. No weights needed: SiT-XL/2 and the FLUX.1-dev transformer (+ its AE) built at full size with random weights in
   bf16, timed through the worker's own velocity functions (DiffusionModel / FluxModel.velocity_fn: fixed
   micro-batches, FLUX packing, guidance 3.5 as an input): sample-NFEs per second at several batch sizes and the peak
   memory (torch.cuda.max_memory_allocated). FLUX's text towers are not part of the per-step loop and are not built:
   a stand-in returns random T5 states (512 x 4096) and CLIP pooled vectors, as the prompt cache would.
2. With weights (`--config WORKER_JSON`, or $NOISESEARCH_GPU_CHECK_CONFIG): the worker engine from that config, and
   one real random search per model (N candidates at the model's default solver, scored by every verifier that can
   judge it, ranked by mean rank, the best decoded to PNG under --png-dir).

Everything is bounded by --deadline-s (default 420 s): what would start past it is reported as skipped.
`--tiny --device cpu` runs the same code paths on tiny configs (the test suite does, tests/test_gpu_check.py).
Run on a GPU machine through scripts/gpu-check-paper-models.sh (it brings diffusers as a wheel when missing).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from noisesearch_worker.models import DiffusionModel, SolverDefaults  # noqa: E402
from noisesearch_worker.sit import SIT_CONFIGS, SiT, SiTParams  # noqa: E402
from noisesearch_worker.testing import tiny_models  # noqa: E402

TINY_SIT = SiTParams(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10)
# The tests' tiny FLUX and AE configs (one block of each kind here: only the code path is exercised).
TINY_FLUX = {**tiny_models.TINY_FLUX, "num_layers": 1, "num_single_layers": 1}
TINY_AE = tiny_models.TINY_AE


class Clock:
    def __init__(self, deadline_s: float):
        self.t0, self.deadline_s = time.perf_counter(), deadline_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.deadline_s - self.elapsed()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


class _DefaultDtype:
    """Build modules directly in bf16 (no fp32 copy of 12 B parameters on the way)."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __enter__(self):
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.old)


def time_velocity(model_fn, x: torch.Tensor, sigma: float, device: torch.device, repeats: int, clock: Clock,
                  warmup: int = 1) -> dict:
    """Calls of model_fn(x, sigma) (one NFE per sample each): sample-NFEs per second and peak memory."""
    reset_peak(device)
    for _ in range(warmup):
        model_fn(x, sigma)
    sync(device)
    calls, t0 = 0, time.perf_counter()
    while calls < repeats:
        model_fn(x, sigma)
        calls += 1
        sync(device)
        if clock.left() < 0:
            break
    dt = time.perf_counter() - t0
    return {"batch": x.shape[0], "calls": calls, "seconds": round(dt, 4),
            "sample_nfes_per_s": round(x.shape[0] * calls / dt, 3), "peak_mem_gib": peak_gib(device)}


def check_sit(device: torch.device, dtype: torch.dtype, batches: list[int], repeats: int, tiny: bool,
              clock: Clock) -> dict:
    params = TINY_SIT if tiny else SIT_CONFIGS["sit-xl-2"]
    t0 = time.perf_counter()
    with torch.device(device), _DefaultDtype(dtype):
        net = SiT(params)
    net.eval().requires_grad_(False)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in net.state_dict().values())
    out = {"model": "sit-tiny" if tiny else "sit-xl-2", "num_parameters": n_params, "dtype": str(dtype),
           "build_seconds": round(build_s, 2), "latent": [params.in_channels, params.input_size, params.input_size],
           "guidance_scale": 1.0, "batches": []}
    for b in batches:
        if clock.left() < 0:
            out["batches"].append({"batch": b, "skipped": "deadline"})
            continue
        m = DiffusionModel(name=out["model"], sit=net, sample_shape=tuple(out["latent"]), num_classes=params.num_classes,
                           defaults=SolverDefaults("heun", 25, 1.0), checkpoint="random", device=device, dtype=dtype,
                           micro_batch=b)
        labels = torch.arange(b) % params.num_classes
        fn = m.velocity_fn(labels, 1.0)
        x = torch.randn(b, *out["latent"], device=device)
        out["batches"].append(time_velocity(fn, x, 0.5, device, repeats, clock))
    del net
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


class RandomText:
    """Stands in for FLUX's T5 + CLIP towers: (N, L, 4096) states and (N, 768) pooled vectors, seeded."""

    def __init__(self, length: int, width: int, pooled: int, device: torch.device, dtype: torch.dtype):
        self.length, self.width, self.pooled, self.device, self.dtype = length, width, pooled, device, dtype

    def encode(self, prompts):
        g = torch.Generator().manual_seed(0)
        n = len(prompts)
        return (torch.randn(n, self.length, self.width, generator=g).to(self.device, self.dtype),
                torch.randn(n, self.pooled, generator=g).to(self.device, self.dtype))


def check_flux(device: torch.device, dtype: torch.dtype, batches: list[int], repeats: int, tiny: bool,
               clock: Clock, resolution: int) -> dict:
    from noisesearch_worker import flux
    t_cfg = TINY_FLUX if tiny else flux.FLUX_CONFIGS["flux-dev"]
    a_cfg = TINY_AE if tiny else flux.FLUX_AE_CONFIGS["flux-ae"]
    reset_peak(device)
    t0 = time.perf_counter()
    with _DefaultDtype(dtype):
        transformer = flux.build_transformer(t_cfg, device=device)
        vae = flux.build_autoencoder(a_cfg, device=device)
    transformer.eval().requires_grad_(False)
    vae.eval().requires_grad_(False)
    build_s = time.perf_counter() - t0
    out = {"model": "flux-tiny" if tiny else "flux-dev", "dtype": str(dtype), "build_seconds": round(build_s, 2),
           "num_parameters": sum(t.numel() for t in transformer.state_dict().values()),
           "ae_num_parameters": sum(t.numel() for t in vae.state_dict().values()),
           "weights_peak_mem_gib": peak_gib(device), "resolution": resolution, "guidance_scale": 3.5,
           "text_tokens": 512, "text_encoders": "random stand-in (not in the per-step loop)", "batches": []}
    text = RandomText(512, t_cfg["joint_attention_dim"], t_cfg["pooled_projection_dim"], device, dtype)
    for b in batches:
        if clock.left() < 0:
            out["batches"].append({"batch": b, "skipped": "deadline"})
            continue
        m = flux.FluxModel(name=out["model"], transformer=transformer, vae=vae, text=text, height=resolution,
                           width=resolution, defaults=flux.FLUX_DEFAULTS, checkpoint="random", device=device,
                           dtype=dtype, micro_batch=b)
        fn = m.velocity_fn(["a photo of a cat"] * b, 3.5)
        x = torch.randn(b, *m.sample_shape, device=device)
        row = time_velocity(fn, x, 0.5, device, repeats, clock)
        row["image_tokens"] = m.image_seq_len
        out["batches"].append(row)
    if clock.left() > 0:  # one AE decode at batch 1: the cost of a final image
        m = flux.FluxModel(name=out["model"], transformer=transformer, vae=vae, text=text, height=resolution,
                           width=resolution, defaults=flux.FLUX_DEFAULTS, checkpoint="random", device=device,
                           dtype=dtype, micro_batch=1)
        reset_peak(device)
        t0 = time.perf_counter()
        m.to_pixels(torch.randn(1, *m.sample_shape, device=device))
        sync(device)
        out["ae_decode"] = {"batch": 1, "seconds": round(time.perf_counter() - t0, 4), "peak_mem_gib": peak_gib(device)}
    del transformer, vae
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def real_search(config_path: str, device_name: str, n: int, png_dir: Path | None, clock: Clock) -> dict:
    """One random search per configured model through the worker engine (its own batching, NFE accounting)."""
    from noisesearch.worker.v1 import worker_pb2 as pb
    from noisesearch_worker.config import WorkerConfig, build_engine
    config = WorkerConfig.load(config_path)
    if device_name:
        config.device = device_name
    t0 = time.perf_counter()
    engine = build_engine(config)
    report = {"config": config_path, "load_seconds": round(time.perf_counter() - t0, 2), "searches": []}
    for name, model in engine.models.items():
        if clock.left() < 0:
            report["searches"].append({"model": name, "skipped": "deadline"})
            continue
        prompt = model.condition_kind == "prompt"
        cond = pb.Condition(prompt="a photo of a red car on a street") if prompt else pb.Condition(class_label=207)
        usable = [v for v in engine.verifiers.values() if name in v.models and v.needs_x_prediction_at is None
                  and (not v.needs_class_label or not prompt) and (not v.needs_prompt or prompt)]
        ns = f"gpu-check-{name}"
        d = model.defaults
        solver = pb.SolverSettings(solver={"heun": pb.SOLVER_HEUN, "euler": pb.SOLVER_EULER}[d.solver], steps=d.steps,
                                   guidance_scale=d.guidance_scale)
        t1 = time.perf_counter()
        noises = engine.initial_noises(pb.InitialNoisesRequest(namespace=ns, model=name, seeds=list(range(1, n + 1))))
        solved = engine.denoise(pb.DenoiseRequest(namespace=ns, model=name, handles=[t.handle for t in noises.tensors],
                                                  conditions=[cond], solver=solver, sigma_from=1.0, sigma_to=0.0,
                                                  release_inputs=True))
        handles = [t.handle for t in solved.tensors]
        scores = engine.score(pb.ScoreRequest(namespace=ns, model=name, handles=handles, verifiers=[v.name for v in usable],
                                              conditions=[cond])) if usable else None
        per = {r.verifier: list(r.scores) for r in scores.results} if scores else {}
        ranks = [0.0] * n
        for vals in per.values():  # mean rank, higher score = better rank (the orchestrator's rank ensemble)
            order = sorted(range(n), key=lambda i: vals[i])
            for r, i in enumerate(order):
                ranks[i] += r / max(1, len(per))
        best = max(range(n), key=lambda i: ranks[i])
        png = engine.decode(pb.DecodeRequest(namespace=ns, model=name, handles=[handles[best]])).png[0]
        if png_dir is not None:
            png_dir.mkdir(parents=True, exist_ok=True)
            (png_dir / f"{name}.png").write_bytes(png)
        engine.release(pb.ReleaseRequest(namespace=ns, all=True))
        report["searches"].append({
            "model": name, "condition": "prompt" if prompt else "class_label 207", "candidates": n,
            "solver": {"solver": d.solver, "steps": d.steps, "guidance_scale": d.guidance_scale},
            "search_nfes": solved.nfes, "verifiers": per, "best": best, "png_bytes": len(png),
            "seconds": round(time.perf_counter() - t1, 2)})
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny configs (CPU test of the code paths)")
    ap.add_argument("--sit-batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--flux-batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--flux-resolution", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per batch size (after one warm-up call)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["sit", "flux", "search"])
    ap.add_argument("--config", default=os.environ.get("NOISESEARCH_GPU_CHECK_CONFIG", ""),
                    help="worker JSON with the real weights: one real search per model")
    ap.add_argument("--candidates", type=int, default=4, help="candidates of each real search")
    ap.add_argument("--png-dir", default=os.environ.get("OUT", ""), help="where the real searches' best PNGs go")
    ap.add_argument("--deadline-s", type=float, default=420.0)
    ap.add_argument("--out", default="", help="also write the JSON here")
    ap.add_argument("--bf16", action="store_true", help="bf16 on the CPU too (bf16 is the default on CUDA)")
    args = ap.parse_args(argv)
    clock = Clock(args.deadline_s)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" or args.bf16 else torch.float32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    report: dict = {"device": str(device), "python": platform.python_version(), "torch": torch.__version__,
                    "tiny": args.tiny}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["gpu_total_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 2)
    try:
        import diffusers
        import transformers
        report["diffusers"], report["transformers"] = diffusers.__version__, transformers.__version__
    except ImportError as e:
        report["import_error"] = str(e)
    steps = {"sit": lambda: check_sit(device, dtype, args.sit_batches, args.repeats, args.tiny, clock),
             "flux": lambda: check_flux(device, dtype, args.flux_batches, args.repeats, args.tiny, clock,
                                        16 if args.tiny else args.flux_resolution)}
    for key, run in steps.items():
        if key in args.skip:
            continue
        if clock.left() < 0:
            report[key] = {"skipped": "deadline"}
            continue
        try:
            report[key] = run()
        except Exception as e:  # report and go on: one failure must not hide the other model's figures
            report[key] = {"error": f"{type(e).__name__}: {e}"}
    if "search" not in args.skip:
        if not args.config:
            report["search"] = {"skipped": "no weights: pass --config WORKER_JSON (or NOISESEARCH_GPU_CHECK_CONFIG)"}
        elif clock.left() < 0:
            report["search"] = {"skipped": "deadline"}
        else:
            try:
                report["search"] = real_search(args.config, args.device, args.candidates,
                                               Path(args.png_dir) if args.png_dir else None, clock)
            except Exception as e:
                report["search"] = {"error": f"{type(e).__name__}: {e}"}
    report["elapsed_s"] = round(clock.elapsed(), 2)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    failed = any(isinstance(report.get(k), dict) and "error" in report[k] for k in ("sit", "flux", "search"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

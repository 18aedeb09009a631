"""Worker configuration: one schema, JSON on disk, the embedded default bundle when none is given.

Example for the paper's ImageNet model (paths are the official releases on your disk):
{"models": [{"name": "sit-xl-2", "config": "sit-xl-2", "checkpoint": "/ckpt/SiT-XL-2-256x256.pt",
             "vae": "/ckpt/sd-vae-ft-ema", "default_solver": {"solver": "heun", "steps": 25}}],
 "verifier_bundles": []}
A model entry may give `micro_batch`: the network's rows per forward (default per family and device,
models.DEFAULT_MICRO_BATCH; choose the smallest batch at which `npm run bench:worker`'s raw throughput stops
rising). A model entry with "family": "flux" loads FLUX.1-dev (flux.load_flux_model); `verifiers` lists the paper's
verifiers (paper_verifiers.load_paper_verifiers). docs/paper-models.md and configs/examples/ have full examples.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .engine import Engine, Limits
from .models import load_sit_model
from .store import TensorStore
from .verifiers import default_bundle_verifiers

CHECKPOINTS = Path(os.environ.get("NOISESEARCH_CHECKPOINTS", Path(__file__).resolve().parents[2] / "checkpoints"))

DEFAULT_MODEL = {
    "name": "sit-fmnist",
    "config": "sit-fmnist",
    "checkpoint": "sit-fmnist.safetensors",
    # Heun 10 steps = 19 evaluations; guidance 1.5 doubles each (38 NFEs per sample).
    "default_solver": {"solver": "heun", "steps": 10, "guidance_scale": 1.5},
}


@dataclass
class WorkerConfig:
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    max_batch: int = 16             # micro-batch of decodes and verifier forwards (rows); a model's own is its `micro_batch`
    # prompts per forward of the text towers (FLUX's CLIP and T5, CLIPScore's CLIP text; a FLUX model entry's
    # `text_micro_batch` overrides it). 1 keeps the bits of today's recipes; more packs concurrent calls' new prompts.
    text_micro_batch: int = 1
    # exact: every forward of a model runs at exactly its micro_batch rows, so a sample's bits never depend on what
    # else runs; fast: micro-batches sized to the rows waiting (1, 2, 4, ...), recorded in recipes (README).
    reproducibility: str = "exact"
    grpc_threads: int = 64          # concurrent calls served (each waits on the schedulers; compute is one loop)
    max_request_samples: int = 4096
    memory_cap_mb: int = 2048       # tensor store cap (RESOURCE_EXHAUSTED past it)
    handle_ttl_s: int = 900
    max_message_bytes: int = 64 * 1024 * 1024
    shutdown_grace_s: float = 10.0
    token: str = ""                 # shared bearer token required on every call (NOISESEARCH_WORKER_TOKEN wins)
    threads: int = 0                # torch intra-op threads on the CPU; 0 = torch's default
    models: list = field(default_factory=lambda: [dict(DEFAULT_MODEL)])
    verifier_bundles: list = field(default_factory=lambda: ["fmnist"])
    verifiers: list = field(default_factory=list)  # the paper's verifiers: [{"name", "kind", paths...}]
    checkpoints_dir: str = str(CHECKPOINTS)

    @classmethod
    def load(cls, path: str | None) -> "WorkerConfig":
        if not path:
            return cls()
        raw = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**raw)

    def __post_init__(self):
        if self.reproducibility not in ("exact", "fast"):
            raise ValueError(f"reproducibility: {self.reproducibility!r} is not one of ['exact', 'fast']")
        for key in ("max_batch", "text_micro_batch"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{key}: must be a positive integer, got {v!r}")
        for i, spec in enumerate(self.models):
            mb = spec.get("micro_batch") if isinstance(spec, dict) else None
            if mb is not None and (not isinstance(mb, int) or mb < 1):
                raise ValueError(f"models[{i}].micro_batch: must be a positive integer, got {mb!r}")


def pick_device(name: str) -> tuple[torch.device, torch.dtype]:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    # bf16 on CUDA (the releases' inference dtype), fp32 on the CPU.
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


def build_engine(config: WorkerConfig) -> Engine:
    if config.threads:
        torch.set_num_threads(config.threads)
    device, dtype = pick_device(config.device)
    base = Path(config.checkpoints_dir)
    models = {}
    for i, spec in enumerate(config.models):
        family = spec.get("family", "sit")
        if "name" not in spec:
            raise ValueError(f"models[{i}].name: required")
        if family == "sit":
            m = load_sit_model(spec, base, device, dtype, decode_micro_batch=config.max_batch)
            # "official" (SiT's forward_with_cfg: channels 0-2 guided, 3 conditional) or "all"; sit.GUIDANCE_CHANNELS
            m.sit.set_guidance_channels(spec.get("guidance_channels", "official"), f"models[{m.name}].guidance_channels")
        elif family == "flux":
            from .flux import load_flux_model  # diffusers + transformers only when a FLUX model is configured
            m = load_flux_model(spec, base, device, dtype, decode_micro_batch=config.max_batch,
                                text_micro_batch=config.text_micro_batch)
        else:
            raise ValueError(f"models[{spec['name']}].family: unknown family {family!r}; known: ['flux', 'sit']")
        models[m.name] = m
    verifiers = {}
    for bundle in config.verifier_bundles:
        if bundle != "fmnist":
            raise ValueError(f"verifier_bundles: unknown bundle {bundle!r}; known: ['fmnist']")
        served = [n for n, m in models.items() if m.num_classes == 10 and m.sample_shape == (1, 32, 32)]
        for v in default_bundle_verifiers(base, device, config.max_batch, served):
            verifiers[v.name] = v
    if config.verifiers:
        from .paper_verifiers import load_paper_verifiers
        for v in load_paper_verifiers(config.verifiers, base, device, dtype, config.max_batch, models,
                                      config.text_micro_batch):
            if v.name in verifiers:
                raise ValueError(f"verifiers: the name {v.name!r} is used twice")
            verifiers[v.name] = v
    store = TensorStore(config.memory_cap_mb * 1024 * 1024, config.handle_ttl_s)
    limits = Limits(max_batch=config.max_batch, max_request_samples=config.max_request_samples,
                    max_message_bytes=config.max_message_bytes)
    return Engine(models, verifiers, store, limits, device, dtype, config.reproducibility)

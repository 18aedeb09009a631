"""Diffusion models as the worker serves them: loading, the guided velocity in the sigma convention, decoding."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .sampling import linear_sigmas
from .sit import SIT_CONFIGS, SiT, load_sit_state_dict
from . import data

SD_VAE_SCALE = 0.18215


class Cancelled(Exception):
    """The client went away or its deadline passed: stop the work."""


@dataclass
class SolverDefaults:
    solver: str = "heun"
    steps: int = 10
    guidance_scale: float = 1.0


def run_fixed_batches(fn: Callable[..., torch.Tensor], size: int, *tensors: torch.Tensor,
                      check: Callable[[], None] | None = None) -> torch.Tensor:
    """Apply `fn` in micro-batches of exactly `size` rows, padding the last one with copies of its first row.

    Matrix kernels pick different code paths for different row counts, so a sample computed in a
    batch of 3 can differ in its last bits from the same sample in a batch of 16. A fixed shape makes
    every sample's result independent of the batch it came in: a recipe re-run alone is bit-identical.
    """
    n = tensors[0].shape[0]
    outs = []
    for start in range(0, n, size):
        if check is not None:
            check()
        chunk = [t[start:start + size] for t in tensors]
        rows = chunk[0].shape[0]
        if rows < size:
            chunk = [torch.cat([c, c[:1].expand(size - rows, *c.shape[1:])]) for c in chunk]
        outs.append(fn(*chunk)[:rows])
    return torch.cat(outs) if outs else torch.empty(0)


@dataclass
class DiffusionModel:
    name: str
    net: SiT
    sample_shape: tuple[int, ...]
    num_classes: int
    defaults: SolverDefaults
    checkpoint: str
    device: torch.device
    dtype: torch.dtype
    micro_batch: int
    vae: object | None = None  # diffusers AutoencoderKL for latent models
    family: str = "sit"
    extra: dict = field(default_factory=dict)
    accepts_prompt: bool = False  # class labels (and the null class), not prompts

    def sigmas(self, sigma_from: float, sigma_to: float, steps: int) -> list[float]:
        """The solver's grid: evenly spaced in sigma (SiT time t = 1 - sigma)."""
        return linear_sigmas(sigma_from, sigma_to, steps)

    def forwards_per_eval(self, guidance: float) -> int:
        """NFEs charged per model evaluation: classifier-free guidance != 1 runs a doubled batch."""
        return 1 if guidance == 1.0 else 2

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.net.state_dict().values())

    def velocity_fn(self, labels: torch.Tensor, guidance: float,
                    check: Callable[[], None] | None = None, on_forward: Callable[[float], None] | None = None):
        """dx/dsigma of the (guided) model for a fixed batch of conditions; each call is one NFE per sample."""
        def net_velocity(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if guidance == 1.0:
                v = self.net(x.to(self.dtype), t.to(self.dtype), y).float()
            else:
                # Classifier-free guidance as one doubled batch: conditional and null-class halves.
                both = self.net(torch.cat([x, x]).to(self.dtype), torch.cat([t, t]).to(self.dtype), torch.cat([y, torch.full_like(y, self.num_classes)])).float()
                v_cond, v_uncond = both.chunk(2)
                v = self.net.guide(v_cond, v_uncond, guidance)  # sit.guided_velocity, per guidance_channels
            return v

        def model(x: torch.Tensor, sigma: float) -> torch.Tensor:
            import time
            t0 = time.perf_counter()
            t = torch.full((x.shape[0],), 1.0 - sigma, device=self.device)
            with torch.inference_mode():
                v = run_fixed_batches(net_velocity, self.micro_batch, x.to(self.device), t, labels.to(self.device), check=check)
            if on_forward is not None:
                on_forward(time.perf_counter() - t0)
            # SiT predicts v = dx/dt = x_data - eps with t = 1 - sigma, so dx/dsigma = -v.
            return -v.to(x.device)

        return model

    @torch.inference_mode()
    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Samples -> images in [-1, 1], (N, C, H, W): through the SD-VAE for latent models."""
        if self.vae is None:
            return x.float().clamp(-1, 1)
        out = run_fixed_batches(lambda z: self.vae.decode((z / SD_VAE_SCALE).to(self.vae.dtype)).sample.float(),
                                self.micro_batch, x.to(self.device))
        return out.clamp(-1, 1)

    def to_uint8(self, x: torch.Tensor) -> list[np.ndarray]:
        if self.name == "sit-fmnist":
            return [data.to_uint8_image(s) for s in x]
        pixels = self.to_pixels(x)
        return [((p.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy() for p in pixels]


def from_pretrained_strict(cls, folder: Path, what: str, **kwargs):
    """`cls.from_pretrained(folder)` offline, refusing a folder whose weights do not cover the model.

    diffusers and transformers initialise missing weights at random with only a warning; here a missing or
    mis-shaped tensor is an error naming `what` (the config key). Unexpected keys are tolerated only for the
    `position_ids` buffers older releases stored.
    """
    model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(m) for m in (info.get("mismatched_keys") or []))
    unexpected = sorted(k for k in (info.get("unexpected_keys") or []) if not k.endswith("position_ids"))
    if missing or mismatched or unexpected:
        raise RuntimeError(f"{what}: {folder} does not match {cls.__name__}: missing keys {missing[:10]}, "
                           f"mismatched {mismatched[:5]}, unexpected {unexpected[:10]}")
    return model


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """A state dict and its metadata from .safetensors or an official torch .pt file (weights only)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    return load_sit_state_dict(ckpt), {}


def load_sit_model(spec: dict, base_dir: Path, device: torch.device, dtype: torch.dtype, micro_batch: int) -> DiffusionModel:
    name = spec["name"]
    config = spec.get("config", name)
    if config not in SIT_CONFIGS:
        raise ValueError(f"models[{name}].config: unknown SiT config {config!r}; known: {sorted(SIT_CONFIGS)}")
    path = Path(spec["checkpoint"])
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise FileNotFoundError(f"models[{name}].checkpoint: {path} does not exist")
    params = SIT_CONFIGS[config]
    net = SiT(params)
    state, _meta = read_checkpoint(path)
    net.load_state_dict(state, strict=True)  # the official layout, key for key
    net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    vae = None
    if spec.get("vae"):
        from diffusers import AutoencoderKL  # only latent models need diffusers
        vae_path = Path(spec["vae"])
        if not vae_path.is_absolute():
            vae_path = base_dir / vae_path
        if not vae_path.exists():
            raise FileNotFoundError(f"models[{name}].vae: {vae_path} does not exist")
        # sd-vae-ft-ema / sd-vae-ft-mse folders; latents are scaled by SD_VAE_SCALE = 0.18215 (to_pixels).
        vae = from_pretrained_strict(AutoencoderKL, vae_path, f"models[{name}].vae").to(device=device, dtype=dtype).eval()
    d = spec.get("default_solver", {})
    defaults = SolverDefaults(d.get("solver", "heun"), int(d.get("steps", 25)), float(d.get("guidance_scale", 1.0)))
    shape = (params.in_channels, params.input_size, params.input_size)
    return DiffusionModel(name=name, net=net, sample_shape=shape, num_classes=params.num_classes, defaults=defaults,
                          checkpoint=str(path), device=device, dtype=dtype, micro_batch=micro_batch, vae=vae,
                          extra={"config": config, "params": json.dumps(params.to_dict())})

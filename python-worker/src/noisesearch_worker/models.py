"""Diffusion models as the worker serves them: loading, the guided velocity in the sigma convention, decoding."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from . import data, scheduler
from .sampling import linear_sigmas
from .sit import SIT_CONFIGS, SiT, load_sit_state_dict

SD_VAE_SCALE = 0.18215


Cancelled = scheduler.Cancelled  # the client went away or its deadline passed (re-exported)

# Pixels cropped from each border when a sample becomes a picture: the SiT config's training layout
# (Fashion-MNIST's 28x28 pictures are padded to 32x32 so that 4x4 patches tile them).
PIXEL_CROP = {"sit-fmnist": data.PAD}


@dataclass
class SolverDefaults:
    solver: str = "heun"
    steps: int = 10
    guidance_scale: float = 1.0


# The network's micro-batch in rows when a model's config does not give `micro_batch`: the smallest batch at
# which the model's raw forward throughput stops rising (`npm run bench:worker` prints it; docs/benchmarks.md).
DEFAULT_MICRO_BATCH = {("sit", "cpu"): 32, ("sit", "cuda"): 64, ("flux", "cpu"): 4, ("flux", "cuda"): 1}


def default_micro_batch(family: str, device: torch.device) -> int:
    return DEFAULT_MICRO_BATCH.get((family, device.type), 16)


def run_fixed_batches(fn: Callable[..., torch.Tensor], size: int, *tensors: torch.Tensor,
                      check: Callable[[], None] | None = None) -> torch.Tensor:
    """Apply `fn` in micro-batches of exactly `size` rows, padding the last one with copies of its first row.

    Matrix kernels pick different code paths for different row counts, so a sample computed in a
    batch of 3 can differ in its last bits from the same sample in a batch of 16. A fixed shape makes
    every sample's result independent of the batch it came in: a recipe re-run alone is bit-identical.
    The worker's networks are served by the compute loop (scheduler.py) and never come here; tools, scripts and
    tests do, holding the device lock per micro-batch so that they never run beside a loop.
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
        with scheduler.DEVICE_LOCK:
            outs.append(fn(*chunk)[:rows])
    return torch.cat(outs) if outs else torch.empty(0)


def run_here(fn: Callable[..., torch.Tensor], micro_batch: int, *inputs: torch.Tensor, exact: bool = False,
             name: str | None = None) -> torch.Tensor:
    """A side network's rows (a verifier's, a text tower's) outside the worker: here, in fixed micro-batches.
    The worker's Compute.run_net has the same signature and runs them through the compute loop instead."""
    return run_fixed_batches(fn, micro_batch, *inputs)


class ServedModel(Protocol):
    """What the engine needs of a diffusion model (SiT and FLUX implement it; nothing else is probed).

    A model evaluation at one sigma is a set of network rows (`eval_rows`) that the model's scheduler packs with
    other calls' rows and runs through `net`; `velocity` turns a call's output rows back into dx/dsigma.
    """
    name: str
    family: str                       # "sit", "flux"
    sample_shape: tuple[int, ...]
    num_classes: int                  # class-conditioned models: labels in [0, num_classes); the null class is num_classes
    condition_kind: str               # "class_label" or "prompt"
    guidance_kind: str                # "cfg": a paired unconditional row; "embedded": an input of the network
    defaults: SolverDefaults
    checkpoint: str
    device: torch.device
    dtype: torch.dtype
    micro_batch: int                  # network rows per forward
    decode_micro_batch: int           # autoencoder rows per forward
    pixel_crop: int
    num_parameters: int

    def sigmas(self, sigma_from: float, sigma_to: float, steps: int) -> list[float]: ...
    def conditions(self, values: list) -> tuple[torch.Tensor, ...]: ...
    def eval_rows(self, x: torch.Tensor, sigma: float, cond: tuple[torch.Tensor, ...],
                  guidance: float) -> tuple[tuple[torch.Tensor, ...], int]: ...
    def net(self, *rows: torch.Tensor) -> torch.Tensor: ...
    def velocity(self, out: torch.Tensor, guidance: float, x: torch.Tensor) -> torch.Tensor: ...
    def use_runner(self, runner: Callable) -> None: ...  # its other networks (FLUX's text towers) go through runner
    decode: Callable[[torch.Tensor], torch.Tensor] | None  # latents -> pixels in [-1, 1]; None: samples are pixels


def forwards_per_eval(model: ServedModel, guidance: float) -> int:
    """NFEs charged per sample per model evaluation: classifier-free guidance other than 1 and 0 runs a
    conditional and an unconditional row; at 0 only the unconditional one; an embedded guidance is an input."""
    if model.guidance_kind == "embedded" or guidance in (0.0, 1.0):
        return 1
    return 2


def pixels_to_uint8(model: ServedModel, pixels: torch.Tensor) -> list[np.ndarray]:
    """Images in [-1, 1], (N, C, H, W) -> uint8 pictures (H, W) or (H, W, C), the model's border cropped."""
    c = model.pixel_crop
    if c:
        pixels = pixels[:, :, c:-c, c:-c]
    out = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()
    return [(p[0] if p.shape[0] == 1 else p.permute(1, 2, 0)).numpy() for p in out]


class PlainCalls:
    """The same evaluations run in-process in fixed micro-batches, for tools, scripts and tests (the worker's calls
    go through the compute loop instead; both give the same bits: same rows, same micro-batch size)."""

    @property
    def accepts_prompt(self) -> bool:
        return self.condition_kind == "prompt"

    def forwards_per_eval(self, guidance: float) -> int:
        return forwards_per_eval(self, guidance)

    def use_runner(self, runner: Callable) -> None:
        """Run the model's networks other than `net` and `decode` through `runner` (the worker's Compute.run_net;
        signature of run_here). A SiT has none."""

    def velocity_fn(self, values, guidance: float, check: Callable[[], None] | None = None, runner=None):
        """dx/dsigma for a fixed batch of conditions (labels or prompts); `runner(rows, unit, sigma)` runs the rows
        (default: here, in fixed micro-batches)."""
        cond = self.conditions(values.tolist() if isinstance(values, torch.Tensor) else list(values))

        def model(x: torch.Tensor, sigma: float) -> torch.Tensor:
            rows, unit = self.eval_rows(x, sigma, cond, guidance)
            if runner is not None:
                out = runner(rows, unit, sigma)
            else:
                with torch.inference_mode():
                    out = run_fixed_batches(self.net, self.micro_batch, *rows, check=check)
            return self.velocity(out, guidance, x)
        return model

    @torch.inference_mode()
    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Samples -> images in [-1, 1], (N, C, H, W): through the autoencoder for latent models."""
        if self.decode is None:
            return x.float().clamp(-1, 1)
        return run_fixed_batches(self.decode, self.decode_micro_batch, x.to(self.device, torch.float32)).clamp(-1, 1)

    def to_uint8(self, x: torch.Tensor) -> list[np.ndarray]:
        return pixels_to_uint8(self, self.to_pixels(x))


@dataclass
class DiffusionModel(PlainCalls):
    """A SiT (pixel or SD-VAE latent space) with classifier-free guidance by a null class."""
    name: str
    sit: SiT
    sample_shape: tuple[int, ...]
    num_classes: int
    defaults: SolverDefaults
    checkpoint: str
    device: torch.device
    dtype: torch.dtype
    micro_batch: int
    vae: object | None = None  # diffusers AutoencoderKL for latent models
    pixel_crop: int = 0
    decode_micro_batch: int = 16
    family: str = "sit"
    condition_kind: str = "class_label"
    guidance_kind: str = "cfg"

    def sigmas(self, sigma_from: float, sigma_to: float, steps: int) -> list[float]:
        """The solver's grid: evenly spaced in sigma (SiT time t = 1 - sigma)."""
        return linear_sigmas(sigma_from, sigma_to, steps)

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.sit.state_dict().values())

    def conditions(self, values: list) -> tuple[torch.Tensor, ...]:
        return (torch.tensor(values, dtype=torch.long, device=self.device),)

    def eval_rows(self, x, sigma, cond, guidance):
        """Network rows (x, t, y) for one evaluation; guidance other than 1 and 0 pairs each row with a null-class
        row (unit 2: conditional, null), guidance 0 needs the null-class row only."""
        (y,) = cond
        x = x.to(self.device)
        t = torch.full((x.shape[0],), 1.0 - sigma, device=self.device)
        null = torch.full_like(y, self.num_classes)
        if guidance == 1.0:
            return (x, t, y), 1
        if guidance == 0.0:
            return (x, t, null), 1
        pair = lambda a, b: torch.stack([a, b], dim=1).flatten(0, 1)  # noqa: E731
        return (pair(x, x), pair(t, t), pair(y, null)), 2

    def net(self, x, t, y):
        return self.sit(x.to(self.dtype), t.to(self.dtype), y).float()

    def velocity(self, out, guidance, x):
        if guidance in (0.0, 1.0):
            v = out
        else:
            pairs = out.view(-1, 2, *out.shape[1:])
            v_cond, v_uncond = pairs[:, 0], pairs[:, 1]
            v = self.sit.guide(v_cond, v_uncond, guidance)  # sit.guided_velocity, per guidance_channels
        # SiT predicts v = dx/dt = x_data - eps with t = 1 - sigma, so dx/dsigma = -v.
        return -v.to(x.device)

    @property
    def decode(self):
        if self.vae is None:
            return None
        return lambda z: self.vae.decode((z / SD_VAE_SCALE).to(self.vae.dtype)).sample.float()


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


def load_sit_model(spec: dict, base_dir: Path, device: torch.device, dtype: torch.dtype,
                   micro_batch: int | None = None, decode_micro_batch: int = 16) -> DiffusionModel:
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
    micro_batch = int(spec.get("micro_batch", micro_batch or default_micro_batch("sit", device)))
    if micro_batch < 2:
        raise ValueError(f"models[{name}].micro_batch: must be >= 2 (a guided evaluation pairs two rows), got {micro_batch}")
    return DiffusionModel(name=name, sit=net, sample_shape=shape, num_classes=params.num_classes, defaults=defaults,
                          checkpoint=str(path), device=device, dtype=dtype, micro_batch=micro_batch, vae=vae,
                          pixel_crop=PIXEL_CROP.get(config, 0), decode_micro_batch=decode_micro_batch)

"""FLUX.1-dev as the worker serves it: diffusers' transformer and autoencoder, transformers' text towers, our loop.

Sigma convention: FLUX's time is t = sigma, and the transformer predicts dx/dsigma = eps - x_data, so
x_data_hat = x - sigma * v and an Euler step is x + (sigma_next - sigma) * v, as the project's samplers do.
What is ours (the rest is the field's libraries):
- the time-shifted sigma grid: sigma = shift(u) = e^mu / (e^mu + 1/u - 1) over u evenly spaced, with mu
  linear in the image token count (0.5 at 256 tokens, 1.15 at 4096; 1024^2 -> 4096 tokens -> mu = 1.15).
  From sigma 1 to 0 in S steps it is exactly FluxPipeline's schedule; a partial range [a, b] is evenly
  spaced in u between shift^-1(a) and shift^-1(b), so every sub-solve uses the same warped clock;
- 2x2 packing of the (16, H/8, W/8) latent into (H/16 * W/16) tokens of 64 channels, and back;
- the guidance embedding (3.5 for FLUX.1-dev): a distilled guidance input, one forward per step;
- loading the BFL single files (flux1-dev.safetensors, ae.safetensors) into diffusers' modules.
A sample (handle) is the unpacked latent (16, H/8, W/8) in fp32; the search never sees packing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
import torch

from .models import PlainCalls, SolverDefaults, default_micro_batch, from_pretrained_strict
from .text import FluxTextEncoder, PromptCache, load_tokenizer

# FluxTransformer2DModel configs (diffusers' names). flux-dev = black-forest-labs/FLUX.1-dev transformer/config.json.
FLUX_CONFIGS: dict[str, dict] = {
    "flux-dev": dict(patch_size=1, in_channels=64, out_channels=None, num_layers=19, num_single_layers=38,
                     attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                     pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
}
# AutoencoderKL configs. flux-ae = FLUX.1-dev vae/config.json (ae.safetensors); scale and shift as the release.
FLUX_AE_CONFIGS: dict[str, dict] = {
    "flux-ae": dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
                    layers_per_block=2, act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024,
                    scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                    force_upcast=True, mid_block_add_attention=True),
}
# FLUX.1-dev scheduler/scheduler_config.json: dynamic shifting with these end points.
FLUX_SHIFT = dict(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15)
FLUX_DEFAULTS = SolverDefaults(solver="euler", steps=30, guidance_scale=3.5)


# ---------- the schedule ----------

def calculate_mu(image_seq_len: int, base_image_seq_len: int = 256, max_image_seq_len: int = 4096,
                 base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """mu linear in the packed image token count (FluxPipeline's calculate_shift)."""
    m = (max_shift - base_shift) / (max_image_seq_len - base_image_seq_len)
    return image_seq_len * m + (base_shift - m * base_image_seq_len)


def time_shift(mu: float, u: float) -> float:
    """sigma = e^mu / (e^mu + (1/u - 1)), with shift(0) = 0 and shift(1) = 1 exactly."""
    if u <= 0.0:
        return 0.0
    if u >= 1.0:
        return 1.0
    return math.exp(mu) / (math.exp(mu) + (1.0 / u - 1.0))


def inverse_time_shift(mu: float, sigma: float) -> float:
    if sigma <= 0.0:
        return 0.0
    if sigma >= 1.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(mu) * (1.0 / sigma - 1.0))


def shifted_sigmas(sigma_from: float, sigma_to: float, steps: int, mu: float) -> list[float]:
    """steps + 1 levels from sigma_from to sigma_to, evenly spaced in the unshifted clock u; the ends are exact."""
    ua, ub = inverse_time_shift(mu, sigma_from), inverse_time_shift(mu, sigma_to)
    inner = [time_shift(mu, ua + (ub - ua) * i / steps) for i in range(1, steps)]
    return [sigma_from, *inner, sigma_to]


# ---------- packing ----------

def pack_latents(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): 2x2 patches as tokens, channel-major inside a patch (FluxPipeline)."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"latent height and width must be even, got {h}x{w}")
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H/2 * W/2, 4C) -> (B, C, H, W), the inverse of pack_latents."""
    b, n, d = tokens.shape
    if n != (h // 2) * (w // 2) or d % 4:
        raise ValueError(f"{n} tokens of {d} channels do not unpack to a {h}x{w} latent")
    return tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def latent_image_ids(h: int, w: int) -> torch.Tensor:
    """Positions of the packed tokens for the 3-axis RoPE: (0, row, col) per token."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


# ---------- BFL single-file layout -> diffusers ----------

def _swap_scale_shift(w: torch.Tensor) -> torch.Tensor:
    shift, scale = w.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def convert_bfl_transformer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """flux1-dev.safetensors keys -> FluxTransformer2DModel keys, for any width and depth.

    The same mapping as diffusers' convert_flux_transformer_checkpoint_to_diffusers (tested equal to it at
    full size), which hard-codes the width 3072 for the single blocks' fused projection; here it is read
    from the checkpoint, so a tiny file in the same pattern converts too. Refuses a key it does not map.
    """
    sd = {k.removeprefix("model.diffusion_model."): v for k, v in state.items()}
    inner = sd["img_in.weight"].shape[0]
    out: dict[str, torch.Tensor] = {}

    def take(src: str, dst: str) -> None:
        out[dst] = sd.pop(src)

    for w in ("weight", "bias"):
        take(f"time_in.in_layer.{w}", f"time_text_embed.timestep_embedder.linear_1.{w}")
        take(f"time_in.out_layer.{w}", f"time_text_embed.timestep_embedder.linear_2.{w}")
        take(f"vector_in.in_layer.{w}", f"time_text_embed.text_embedder.linear_1.{w}")
        take(f"vector_in.out_layer.{w}", f"time_text_embed.text_embedder.linear_2.{w}")
        if f"guidance_in.in_layer.{w}" in sd:
            take(f"guidance_in.in_layer.{w}", f"time_text_embed.guidance_embedder.linear_1.{w}")
            take(f"guidance_in.out_layer.{w}", f"time_text_embed.guidance_embedder.linear_2.{w}")
        take(f"txt_in.{w}", f"context_embedder.{w}")
        take(f"img_in.{w}", f"x_embedder.{w}")
        take(f"final_layer.linear.{w}", f"proj_out.{w}")
        out[f"norm_out.linear.{w}"] = _swap_scale_shift(sd.pop(f"final_layer.adaLN_modulation.1.{w}"))

    def blocks(prefix: str) -> list[int]:
        return sorted({int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".")})

    for i in blocks("double_blocks"):
        s, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for w in ("weight", "bias"):
            take(f"{s}img_mod.lin.{w}", f"{d}norm1.linear.{w}")
            take(f"{s}txt_mod.lin.{w}", f"{d}norm1_context.linear.{w}")
            for name, chunk in zip(("to_q", "to_k", "to_v"), sd.pop(f"{s}img_attn.qkv.{w}").chunk(3, dim=0)):
                out[f"{d}attn.{name}.{w}"] = chunk
            for name, chunk in zip(("add_q_proj", "add_k_proj", "add_v_proj"),
                                   sd.pop(f"{s}txt_attn.qkv.{w}").chunk(3, dim=0)):
                out[f"{d}attn.{name}.{w}"] = chunk
            take(f"{s}img_attn.proj.{w}", f"{d}attn.to_out.0.{w}")
            take(f"{s}txt_attn.proj.{w}", f"{d}attn.to_add_out.{w}")
            take(f"{s}img_mlp.0.{w}", f"{d}ff.net.0.proj.{w}")
            take(f"{s}img_mlp.2.{w}", f"{d}ff.net.2.{w}")
            take(f"{s}txt_mlp.0.{w}", f"{d}ff_context.net.0.proj.{w}")
            take(f"{s}txt_mlp.2.{w}", f"{d}ff_context.net.2.{w}")
        take(f"{s}img_attn.norm.query_norm.scale", f"{d}attn.norm_q.weight")
        take(f"{s}img_attn.norm.key_norm.scale", f"{d}attn.norm_k.weight")
        take(f"{s}txt_attn.norm.query_norm.scale", f"{d}attn.norm_added_q.weight")
        take(f"{s}txt_attn.norm.key_norm.scale", f"{d}attn.norm_added_k.weight")

    for i in blocks("single_blocks"):
        s, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        for w in ("weight", "bias"):
            take(f"{s}modulation.lin.{w}", f"{d}norm.linear.{w}")
            fused = sd.pop(f"{s}linear1.{w}")
            q, k, v, mlp = torch.split(fused, (inner, inner, inner, fused.shape[0] - 3 * inner), dim=0)
            out[f"{d}attn.to_q.{w}"], out[f"{d}attn.to_k.{w}"], out[f"{d}attn.to_v.{w}"] = q, k, v
            out[f"{d}proj_mlp.{w}"] = mlp
            take(f"{s}linear2.{w}", f"{d}proj_out.{w}")
        take(f"{s}norm.query_norm.scale", f"{d}attn.norm_q.weight")
        take(f"{s}norm.key_norm.scale", f"{d}attn.norm_k.weight")

    if sd:
        raise KeyError(f"unexpected keys in the FLUX checkpoint: {sorted(sd)[:10]}")
    return out


def convert_bfl_autoencoder(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """ae.safetensors keys -> AutoencoderKL keys, through diffusers' own LDM-VAE conversion."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    return convert_ldm_vae_checkpoint(dict(state), config)


# ---------- building the modules ----------

def _config(registry: dict, spec_value, key: str, name: str) -> dict:
    if isinstance(spec_value, dict):
        return dict(spec_value)
    if spec_value not in registry:
        raise ValueError(f"models[{name}].{key}: unknown config {spec_value!r}; known: {sorted(registry)}")
    return dict(registry[spec_value])


def _strict_assign(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RuntimeError(f"{what}: missing keys {missing[:10]}, unexpected keys {unexpected[:10]}")
    bad = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        raise RuntimeError(f"{what}: shape mismatch at {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in bad[:5]]}")
    module.load_state_dict(state, strict=True, assign=True)


def build_transformer(config: dict, device: str | torch.device = "meta"):
    from diffusers import FluxTransformer2DModel
    with torch.device(device):
        return FluxTransformer2DModel(**config)


def build_autoencoder(config: dict, device: str | torch.device = "meta"):
    from diffusers import AutoencoderKL
    with torch.device(device):
        return AutoencoderKL(**config)


def load_transformer(path: Path, config: dict, dtype: torch.dtype, what: str = "transformer"):
    """A diffusers `transformer/` folder, or a BFL single file (.safetensors), loaded strictly, offline."""
    if path.is_dir():
        from diffusers import FluxTransformer2DModel
        return from_pretrained_strict(FluxTransformer2DModel, path, what, torch_dtype=dtype)
    from safetensors.torch import load_file
    net = build_transformer(config)
    _strict_assign(net, convert_bfl_transformer(load_file(str(path))), f"{what}: {path}")
    return net.to(dtype)


def load_autoencoder(path: Path, config: dict, dtype: torch.dtype, what: str = "vae"):
    """A diffusers `vae/` folder, or the BFL ae.safetensors, loaded strictly, offline."""
    if path.is_dir():
        from diffusers import AutoencoderKL
        return from_pretrained_strict(AutoencoderKL, path, what, torch_dtype=dtype)
    from safetensors.torch import load_file
    vae = build_autoencoder(config)
    _strict_assign(vae, convert_bfl_autoencoder(load_file(str(path)), config), f"{what}: {path}")
    return vae.to(dtype)


# ---------- the served model ----------

@dataclass
class FluxModel(PlainCalls):
    name: str
    transformer: torch.nn.Module
    vae: torch.nn.Module
    text: FluxTextEncoder
    height: int
    width: int
    defaults: SolverDefaults
    checkpoint: str
    device: torch.device
    dtype: torch.dtype
    micro_batch: int
    shift: dict = field(default_factory=lambda: dict(FLUX_SHIFT))
    decode_micro_batch: int = 16
    family: str = "flux"
    num_classes: int = 0
    condition_kind: str = "prompt"
    guidance_kind: str = "embedded"  # a distilled guidance input: one forward per evaluation at any scale
    pixel_crop: int = 0

    def __post_init__(self):
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if self.height % (2 * self.vae_scale) or self.width % (2 * self.vae_scale):
            raise ValueError(f"models[{self.name}]: height and width must be multiples of {2 * self.vae_scale}")
        self.latent_h, self.latent_w = self.height // self.vae_scale, self.width // self.vae_scale
        self.sample_shape = (self.vae.config.latent_channels, self.latent_h, self.latent_w)
        self.image_seq_len = (self.latent_h // 2) * (self.latent_w // 2)
        self.mu = calculate_mu(self.image_seq_len, **self.shift)
        self.img_ids = latent_image_ids(self.latent_h, self.latent_w).to(self.device, self.dtype)
        self.guidance_embeds = bool(self.transformer.config.guidance_embeds)

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.transformer.state_dict().values())

    def sigmas(self, sigma_from: float, sigma_to: float, steps: int) -> list[float]:
        return shifted_sigmas(sigma_from, sigma_to, steps, self.mu)

    def conditions(self, values: list) -> tuple[torch.Tensor, ...]:
        """Per-row text conditions: T5 states and CLIP pooled embeddings (each prompt encoded at most once)."""
        return self.text.encode(values)

    def use_runner(self, runner) -> None:
        """The text towers' rows through the worker's compute loop, packed with other calls' new prompts."""
        self.text.runner = runner

    def eval_rows(self, x, sigma, cond, guidance):
        """Rows (tokens, sigma, T5 states, CLIP pooled, guidance): the guidance is an input, one row per sample."""
        states, pooled = cond
        tokens = pack_latents(x.to(self.device, torch.float32))
        # FluxPipeline passes timestep = scheduler time / 1000 = sigma (the transformer scales by 1000 inside).
        sig = torch.full((x.shape[0],), sigma, device=self.device, dtype=torch.float32)
        return (tokens, sig, states, pooled, torch.full_like(sig, guidance)), 1

    def net(self, tokens, sig, states, pooled, g):
        txt_ids = torch.zeros(states.shape[1], 3, device=self.device, dtype=self.dtype)
        return self.transformer(hidden_states=tokens.to(self.dtype), encoder_hidden_states=states,
                                pooled_projections=pooled, timestep=sig.to(self.dtype), img_ids=self.img_ids,
                                txt_ids=txt_ids, guidance=g.to(self.dtype) if self.guidance_embeds else None,
                                return_dict=False)[0].float()

    def velocity(self, out, guidance, x):
        return unpack_latents(out, self.latent_h, self.latent_w).to(x.device)

    @property
    def decode(self):
        """Latents -> images in [-1, 1] through the AE: z / scaling_factor + shift_factor, as FluxPipeline."""
        cfg = self.vae.config
        return lambda z: self.vae.decode((z / cfg.scaling_factor + cfg.shift_factor).to(self.vae.dtype)).sample.float()


def _path(spec: dict, key: str, base: Path, default: Path | None) -> Path:
    name = spec["name"]
    raw = spec.get(key)
    if raw is None and default is None:
        raise ValueError(f"models[{name}].{key}: required (or give `path`, the release folder)")
    p = Path(raw) if raw is not None else default
    if not p.is_absolute():
        p = base / p
    if not p.exists():
        raise FileNotFoundError(f"models[{name}].{key}: {p} does not exist")
    return p


def load_flux_model(spec: dict, base_dir: Path, device: torch.device, dtype: torch.dtype, micro_batch: int | None = None,
                    cache: PromptCache | None = None, decode_micro_batch: int = 16, text_micro_batch: int = 1) -> FluxModel:
    """FLUX from the release folder (`path`: transformer/ vae/ text_encoder/ text_encoder_2/ tokenizer/ tokenizer_2/),
    any part overridable; `transformer` and `vae` may be the BFL single files flux1-dev.safetensors and ae.safetensors."""
    from transformers import CLIPTextModel, T5EncoderModel
    name = spec["name"]
    root = None
    if spec.get("path") is not None:
        root = Path(spec["path"]) if Path(spec["path"]).is_absolute() else base_dir / spec["path"]
        if not root.is_dir():
            raise FileNotFoundError(f"models[{name}].path: {root} does not exist")
    sub = lambda s: None if root is None else root / s  # noqa: E731
    transformer_path = _path(spec, "transformer", base_dir, sub("transformer"))
    vae_path = _path(spec, "vae", base_dir, sub("vae"))
    paths = {k: _path(spec, k, base_dir, sub(k)) for k in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")}
    transformer = load_transformer(transformer_path, _config(FLUX_CONFIGS, spec.get("config", "flux-dev"), "config", name),
                                   dtype, f"models[{name}].transformer")
    vae = load_autoencoder(vae_path, _config(FLUX_AE_CONFIGS, spec.get("vae_config", "flux-ae"), "vae_config", name),
                           dtype, f"models[{name}].vae")
    transformer.to(device).eval().requires_grad_(False)
    vae.to(device).eval().requires_grad_(False)
    text_micro_batch = spec.get("text_micro_batch", text_micro_batch)
    if not isinstance(text_micro_batch, int) or text_micro_batch < 1:
        raise ValueError(f"models[{name}].text_micro_batch: must be a positive integer, got {text_micro_batch!r}")
    text = FluxTextEncoder(
        load_tokenizer(paths["tokenizer"], "clip"),
        from_pretrained_strict(CLIPTextModel, paths["text_encoder"], f"models[{name}].text_encoder", torch_dtype=dtype),
        load_tokenizer(paths["tokenizer_2"], "t5"),
        from_pretrained_strict(T5EncoderModel, paths["text_encoder_2"], f"models[{name}].text_encoder_2", torch_dtype=dtype),
        device, dtype, cache or PromptCache(int(spec.get("prompt_cache_size", 256))), owner=name,
        max_sequence_length=int(spec.get("max_sequence_length", 512)),
        offload=bool(spec.get("offload_text_encoders", False)),
        micro_batch=text_micro_batch)
    shift = dict(FLUX_SHIFT)
    sched = None if root is None else root / "scheduler" / "scheduler_config.json"
    if sched is not None and sched.exists():
        import json
        raw = json.loads(sched.read_text())
        shift.update({k: raw[k] for k in FLUX_SHIFT if k in raw})
    d = spec.get("default_solver", {})
    defaults = SolverDefaults(d.get("solver", FLUX_DEFAULTS.solver), int(d.get("steps", FLUX_DEFAULTS.steps)),
                              float(d.get("guidance_scale", FLUX_DEFAULTS.guidance_scale)))
    return FluxModel(name=name, transformer=transformer, vae=vae, text=text, height=int(spec.get("height", 1024)),
                     width=int(spec.get("width", 1024)), defaults=defaults, checkpoint=str(transformer_path),
                     device=device, dtype=dtype, shift=shift, decode_micro_batch=decode_micro_batch,
                     micro_batch=int(spec.get("micro_batch", micro_batch or default_micro_batch("flux", device))))

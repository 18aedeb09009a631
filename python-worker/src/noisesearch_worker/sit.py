"""SiT: Scalable Interpolant Transformers (Ma et al., 2024), as the official code lays it out.

One implementation for every config: SiT-XL/2 loads the released `SiT-XL-2-256x256.pt`
strictly (same keys and shapes), and the embedded Fashion-MNIST model is a small config of
the same class. Read top-down as the paper's figure: patchify -> +pos -> N adaLN-Zero blocks
conditioned on (t, y) -> adaLN final layer -> unpatchify -> velocity.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SiTParams:
    input_size: int
    patch_size: int
    in_channels: int
    hidden_size: int
    depth: int
    num_heads: int
    num_classes: int
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _imagenet(depth: int, hidden: int, heads: int) -> SiTParams:
    return SiTParams(input_size=32, patch_size=2, in_channels=4, hidden_size=hidden, depth=depth,
                     num_heads=heads, num_classes=1000)


SIT_CONFIGS: dict[str, SiTParams] = {
    "sit-xl-2": _imagenet(28, 1152, 16),
    "sit-l-2": _imagenet(24, 1024, 16),
    "sit-b-2": _imagenet(12, 768, 12),
    # The embedded default: Fashion-MNIST in pixel space, 28x28 padded to 32x32.
    "sit-fmnist": SiTParams(input_size=32, patch_size=4, in_channels=1, hidden_size=128, depth=4,
                            num_heads=4, num_classes=10, learn_sigma=False),
}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """Image to patch tokens (timm's PatchEmbed, key `proj`)."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of SiT time t in [0, 1] (not scaled by 1000), then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class embeddings; row `num_classes` is the null class used for classifier-free guidance."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, y: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        if train and self.dropout_prob > 0:
            drop = torch.rand(y.shape[0], generator=generator, device=y.device) < self.dropout_prob
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return self.embedding_table(y)


class Attention(nn.Module):
    """Multi-head self-attention (timm layout: fused `qkv`, `proj`) on PyTorch's fused SDPA kernel."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> np.ndarray:
    """MAE/DiT 2-D sin-cos position table, shape (grid_size**2, embed_dim)."""
    grid_h, grid_w = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))

    def one_axis(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    # DiT's meshgrid order puts w first.
    return np.concatenate([one_axis(embed_dim // 2, grid_h), one_axis(embed_dim // 2, grid_w)], axis=1)


class SiT(nn.Module):
    """SiT backbone. `forward(x, t, y)` returns the velocity dx/dt = x_data - noise at SiT time t = 1 - sigma."""

    def __init__(self, params: SiTParams):
        super().__init__()
        self.params = params
        p = params
        self.in_channels = p.in_channels
        self.out_channels = p.in_channels * 2 if p.learn_sigma else p.in_channels
        self.patch_size = p.patch_size
        self.num_classes = p.num_classes
        num_patches = (p.input_size // p.patch_size) ** 2
        self.x_embedder = PatchEmbed(p.patch_size, p.in_channels, p.hidden_size)
        self.t_embedder = TimestepEmbedder(p.hidden_size)
        self.y_embedder = LabelEmbedder(p.num_classes, p.hidden_size, p.class_dropout_prob)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, p.hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([SiTBlock(p.hidden_size, p.num_heads, p.mlp_ratio) for _ in range(p.depth)])
        self.final_layer = FinalLayer(p.hidden_size, p.patch_size, self.out_channels)

    def initialize_weights(self) -> None:
        """The official initialisation (xavier linears, zeroed adaLN and output), for training."""
        def basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(basic_init)
        grid = int(self.pos_embed.shape[1] ** 0.5)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_pos_embed_2d(self.pos_embed.shape[-1], grid)).float()[None])
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        c, p = self.out_channels, self.patch_size
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, train, generator)
        for block in self.blocks:
            x = block(x, c)
        x = self.unpatchify(self.final_layer(x, c))
        # learn_sigma checkpoints carry a variance head that the ODE sampler does not use.
        return x[:, : self.in_channels] if self.params.learn_sigma else x


def load_sit_state_dict(checkpoint: dict) -> dict:
    """The model weights inside a SiT file: a bare state dict, or the `ema` entry of a training checkpoint."""
    if "ema" in checkpoint and isinstance(checkpoint["ema"], dict):
        return checkpoint["ema"]
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        return checkpoint["model"]
    return checkpoint

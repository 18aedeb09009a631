"""The paper's verifiers, each from its published weights, through transformers.

Text-to-image (FLUX.1-dev, DrawBench):
- aesthetic     LAION aesthetic predictor (improved-aesthetic-predictor, sac+logos+ava1-l14-linearMSE.pth): its MLP
                over the L2-normalised CLIP ViT-L/14 image embedding. Needs nothing.
- clipscore     CLIPScore (Hessel et al. 2021): w * max(cos(E_image, E_text), 0) with w = 2.5, CLIP ViT-L/14,
                the caption prefixed "A photo depicts " as the reference implementation does. Needs the prompt.
- imagereward   ImageReward (Xu et al. 2023): BLIP ViT-L/16 image tokens cross-attended by a BERT-base text encoder,
                its [CLS] state through the MLP head, normalised with the release's mean 0.1672 and std 1.0333.
                Loaded strictly: every tensor of ImageReward.pt is placed or named as unused, none is missing.
                Needs the prompt.
ImageNet (SiT-XL/2):
- dino-linearhead   DINOv2 + its official linear classification head (torch-hub .pth): the logit of the class.
- clip-zeroshot     CLIP zero-shot classifier from the 1000 class names and CLIP's 80 prompt templates
                    (python-worker/data/, sources recorded there): 100 * cos, the logit of the class.
- dino-ssl, clip-ssl  self-supervised: cosine, in DINOv2 [CLS] / CLIP image-embedding space, between the
                    x-prediction at sigma 0.4 and the final sample. Need the x-prediction, no condition.

Every verifier sees the samples as the release's preprocessing expects them: decoded, quantised to 8-bit RGB
(the image a user would save), then PIL bicubic resize of the shorter side, centre crop, scale to [0, 1] and
normalise, with sizes and statistics read from the model folder's preprocessor_config.json when it has one.

Every network forward of a served verifier goes through its `forward` (Verifier.forward: the worker's compute loop,
one scheduler per network, rows of concurrent calls packed into fixed micro-batches); towers shared by several
verifiers (one CLIP folder for clipscore, aesthetic, clip-ssl, ...) take the calling verifier's `forward`, and each of
their networks is one stable bound method, so all their callers share its scheduler.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .models import from_pretrained_strict, run_here
from .text import PromptCache, load_tokenizer
from .verifiers import Verifier

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIPSCORE_W, CLIPSCORE_PREFIX = 2.5, "A photo depicts "
IMAGEREWARD_MEAN, IMAGEREWARD_STD = 0.16717362830052426, 1.0333394966054072
IMAGEREWARD_MAX_TOKENS = 35
# BLIP create_vit('large', 224): the ViT-L/16 inside ImageReward.
IMAGEREWARD_VIT = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=224, patch_size=16)


# ---------- preprocessing ----------

@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side (PIL bicubic), centre crop, [0, 1], normalise: torchvision's Resize/CenterCrop arithmetic."""
    resize: int
    crop: int
    mean: tuple
    std: tuple

    @classmethod
    def from_folder(cls, folder: Path, resize: int, crop: int, mean: tuple, std: tuple) -> "Preprocess":
        cfg_path = folder / "preprocessor_config.json"
        if cfg_path.exists():
            cfg = json.loads(cfg_path.read_text())
            size = cfg.get("size", resize)
            resize = size.get("shortest_edge", resize) if isinstance(size, dict) else int(size)
            c = cfg.get("crop_size", crop)
            crop = c.get("height", crop) if isinstance(c, dict) else int(c)
            mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
        return cls(int(resize), int(crop), tuple(mean), tuple(std))

    def image(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        if short != self.resize:
            new_long = int(self.resize * long / short)
            img = img.resize((self.resize, new_long) if w <= h else (new_long, self.resize), Image.BICUBIC)
        w, h = img.size
        top, left = int(round((h - self.crop) / 2.0)), int(round((w - self.crop) / 2.0))
        img = img.crop((left, top, left + self.crop, top + self.crop)).convert("RGB")
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self.image(i) for i in images])


def to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """Decoded samples in [-1, 1] (N, 3, H, W) -> 8-bit RGB images, rounded exactly as the worker's PNGs."""
    arr = ((pixels.float().permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return [Image.fromarray(a) for a in arr]


# ---------- shared feature extractors ----------

class ClipTower:
    """transformers CLIPModel from an openai/clip-vit-* folder: projected image and text embeddings (not normalised).

    Image rows run at `micro_batch`, prompt rows at `text_micro_batch` (1 by default: the bits of a request's one
    prompt as before, when a request's new prompts were encoded as one batch)."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype, micro_batch: int,
                 text_micro_batch: int = 1):
        from transformers import CLIPModel
        self.folder = folder
        self.model = from_pretrained_strict(CLIPModel, folder, "clip folder", torch_dtype=dtype).to(device).eval()
        self.model.requires_grad_(False)
        self.tokenizer = load_tokenizer(folder, "clip")
        self.preprocess = Preprocess.from_folder(folder, 224, 224, CLIP_MEAN, CLIP_STD)
        self.device, self.dtype, self.micro_batch, self.text_micro_batch = device, dtype, micro_batch, text_micro_batch

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def image_rows(self, b: torch.Tensor) -> torch.Tensor:
        return self.model.visual_projection(self.model.vision_model(pixel_values=b.to(self.device, self.dtype)).pooler_output).float()

    def text_rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.text_projection(self.model.text_model(input_ids=ids.to(self.device)).pooler_output).float()

    @torch.inference_mode()
    def image_embeds(self, pixels: torch.Tensor, forward=run_here) -> torch.Tensor:
        return forward(self.image_rows, self.micro_batch, self.preprocess(to_images(pixels)),
                       name=f"CLIP {self.folder.name} image tower")

    @torch.inference_mode()
    def text_embeds(self, texts: list[str], forward=None) -> torch.Tensor:
        """Projected text embeddings; through `forward` at text_micro_batch (a call's prompts), or with none as one
        batch of every text (the zero-shot classifier's class weights, computed once at load and cached on disk)."""
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
                             return_tensors="pt").input_ids
        if forward is None:
            return self.text_rows(ids)
        return forward(self.text_rows, self.text_micro_batch, ids, exact=True, name=f"CLIP {self.folder.name} text tower")


# The official hub constructors' position-embedding interpolation (facebookresearch/dinov2 hub/backbones.py):
# (interpolate_offset, interpolate_antialias) = (0.1, False) for the plain models, (0.0, True) with registers.
DINOV2_INTERPOLATION = {False: (0.1, False), True: (0.0, True)}


def dinov2_position_embeddings(pos_embed: torch.Tensor, height: int, width: int, patch_size: int, offset: float,
                               antialias: bool) -> torch.Tensor:
    """Position embeddings for a height x width image as DINOv2's own `interpolate_pos_encoding` computes them.

    The release's 37 x 37 grid (518 px) is resized bicubically to (H/14, W/14). With an offset (the plain models) the
    official code passes scale_factor = (H/14 + 0.1) / 37, which sets the sampling positions, where transformers passes
    size = (H/14, W/14): at 224 px the 16 sampling positions drift apart by up to 0.22 of a source cell (a cell's
    centre j + 0.5 maps to (j + 0.5) * 37 / 16.1 - 0.5 against (j + 0.5) * 37 / 16 - 0.5).
    """
    n = pos_embed.shape[1] - 1
    h0, w0 = height // patch_size, width // patch_size
    if h0 * w0 == n and height == width:
        return pos_embed
    m = int(math.sqrt(n))
    if m * m != n:
        raise ValueError(f"DINOv2 position embeddings: {n} patch positions are not a square grid")
    grid = pos_embed[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
    size = dict(scale_factor=((h0 + offset) / m, (w0 + offset) / m)) if offset else dict(size=(h0, w0))
    grid = F.interpolate(grid, mode="bicubic", antialias=antialias, **size)
    if grid.shape[-2:] != (h0, w0):
        raise ValueError(f"DINOv2 position embeddings: interpolated to {tuple(grid.shape[-2:])}, not {(h0, w0)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)
    return torch.cat([pos_embed[:, :1].float(), grid], dim=1).to(pos_embed.dtype)


def use_official_dinov2_interpolation(embeddings: torch.nn.Module, registers: bool) -> None:
    """Replace a transformers Dinov2(WithRegisters)Embeddings' interpolation by the official one (this instance only)."""
    offset, antialias = DINOV2_INTERPOLATION[registers]
    patch = embeddings.config.patch_size

    def interpolate_pos_encoding(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return dinov2_position_embeddings(embeddings.position_embeddings, height, width, patch, offset, antialias)
    embeddings.interpolate_pos_encoding = interpolate_pos_encoding


class DinoTower:
    """transformers Dinov2Model from a facebook/dinov2-* folder; features as the official hub's forward_features,
    position embeddings interpolated as the official model does (use_official_dinov2_interpolation)."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype, micro_batch: int):
        from transformers import AutoConfig, Dinov2Model, Dinov2WithRegistersModel
        cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        cls = Dinov2WithRegistersModel if cfg.model_type == "dinov2_with_registers" else Dinov2Model
        self.folder = folder
        self.registers = int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.model = from_pretrained_strict(cls, folder, "dinov2 folder", torch_dtype=dtype).to(device).eval()
        self.model.requires_grad_(False)
        use_official_dinov2_interpolation(self.model.embeddings, registers=cls is Dinov2WithRegistersModel)
        # The hub's classification eval transform: Resize(256, bicubic), CenterCrop(224), ImageNet statistics.
        self.preprocess = Preprocess.from_folder(folder, 256, 224, IMAGENET_MEAN, IMAGENET_STD)
        self.device, self.dtype, self.micro_batch = device, dtype, micro_batch
        # One network function per head width, created once: its identity keys its scheduler (Compute.run_net).
        self.feature_rows = {layers: functools.partial(self._feature_rows, layers) for layers in (1, 4)}

    @property
    def embed_dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _feature_rows(self, layers: int, b: torch.Tensor) -> torch.Tensor:
        skip = 1 + self.registers
        out = self.model(pixel_values=b.to(self.device, self.dtype), output_hidden_states=layers == 4)
        if layers == 1:
            h = out.last_hidden_state
            return torch.cat([h[:, 0], h[:, skip:].mean(dim=1)], dim=1).float()
        hs = [self.model.layernorm(h) for h in out.hidden_states[-4:]]
        return torch.cat([h[:, 0] for h in hs] + [hs[-1][:, skip:].mean(dim=1)], dim=1).float()

    @torch.inference_mode()
    def linear_input(self, pixels: torch.Tensor, layers: int, forward=run_here) -> torch.Tensor:
        """The official linear head's input: [cls, mean(patches)] (1 layer) or 4 normed [cls]s + mean(patches)."""
        return forward(self.feature_rows[layers], self.micro_batch, self.preprocess(to_images(pixels)),
                       name=f"DINOv2 {self.folder.name} features ({layers} layer{'s' if layers > 1 else ''})")

    def cls_token(self, pixels: torch.Tensor, forward=run_here) -> torch.Tensor:
        return self.linear_input(pixels, 1, forward)[:, : self.embed_dim]


# ---------- verifiers ----------

class ClipScore(Verifier):
    def __init__(self, name: str, clip: ClipTower, cache: PromptCache, models: list[str], w: float = CLIPSCORE_W,
                 prefix: str = CLIPSCORE_PREFIX, held_out: bool = False):
        super().__init__(name, f"CLIPScore (Hessel et al. 2021): {w} * max(cos(image, '{prefix}' + prompt), 0), "
                         f"CLIP {clip.folder.name}", needs_prompt=True, held_out=held_out, models=models)
        self.clip, self.cache, self.w, self.prefix = clip, cache, w, prefix

    def score(self, model, samples, labels, x_predictions, prompts=None):
        img = F.normalize(self.clip.image_embeds(model.to_pixels(samples), self.forward), dim=-1)
        encode = lambda ps: list(self.clip.text_embeds([self.prefix + p for p in ps], self.forward))  # noqa: E731
        txt = F.normalize(torch.stack(self.cache.get_many(self.name, prompts, encode)).to(img.device), dim=-1)
        return (self.w * (img * txt).sum(-1).clamp(min=0)).cpu().double()


def aesthetic_mlp(input_size: int = 768) -> torch.nn.Sequential:
    """improved-aesthetic-predictor's MLP (and ImageReward's head): no activations, dropouts idle at eval."""
    return torch.nn.Sequential(torch.nn.Linear(input_size, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
                               torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
                               torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))


def load_torch_state(path: Path) -> dict:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    return state


class LaionAesthetic(Verifier):
    def __init__(self, name: str, clip: ClipTower, head_path: Path, models: list[str], held_out: bool = False):
        super().__init__(name, f"LAION aesthetic predictor ({head_path.name}) over CLIP {clip.folder.name} image "
                         "embeddings", held_out=held_out, models=models)
        state = load_torch_state(head_path)
        state = {k.removeprefix("layers."): v for k, v in state.items()}
        self.mlp = aesthetic_mlp(state["0.weight"].shape[1])
        self.mlp.load_state_dict(state, strict=True)
        self.mlp.to(clip.device).eval().requires_grad_(False)
        self.clip = clip

    @torch.inference_mode()
    def score(self, model, samples, labels, x_predictions, prompts=None):
        emb = F.normalize(self.clip.image_embeds(model.to_pixels(samples), self.forward), dim=-1)
        return self.mlp(emb).squeeze(1).cpu().double()


def blip_vision_key(k: str) -> str:
    """BLIP's timm-style ViT keys -> transformers' BlipVisionModel keys."""
    import re
    k = k.replace("cls_token", "embeddings.class_embedding").replace("pos_embed", "embeddings.position_embedding")
    k = k.replace("patch_embed.proj", "embeddings.patch_embedding")
    m = re.match(r"blocks\.(\d+)\.(.*)", k)
    if m:
        rest = m.group(2)
        for a, b in (("norm1", "layer_norm1"), ("norm2", "layer_norm2"), ("attn.qkv", "self_attn.qkv"),
                     ("attn.proj", "self_attn.projection")):
            if rest.startswith(a):
                rest = b + rest[len(a):]
        return f"encoder.layers.{m.group(1)}.{rest}"
    if k.startswith("norm."):
        return "post_layernorm." + k[len("norm."):]
    return k


class ImageRewardModel(torch.nn.Module):
    """ImageReward's modules in transformers' BLIP classes, with the checkpoint's layout mapped key for key."""

    def __init__(self, med_config: dict, vision: dict):
        super().__init__()
        from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel
        self.visual_encoder = BlipVisionModel(BlipVisionConfig(**vision, layer_norm_eps=1e-6, hidden_act="gelu"))
        text_cfg = BlipTextConfig(
            vocab_size=med_config["vocab_size"], hidden_size=med_config["hidden_size"],
            encoder_hidden_size=vision["hidden_size"], intermediate_size=med_config["intermediate_size"],
            num_hidden_layers=med_config["num_hidden_layers"], num_attention_heads=med_config["num_attention_heads"],
            max_position_embeddings=med_config["max_position_embeddings"], hidden_act=med_config.get("hidden_act", "gelu"),
            layer_norm_eps=med_config.get("layer_norm_eps", 1e-12), pad_token_id=med_config.get("pad_token_id", 0),
            is_decoder=True)  # creates the cross-attention layers; the forward runs bidirectionally (is_decoder=False)
        self.text_encoder = BlipTextModel(text_cfg, add_pooling_layer=False)
        # Trained for BLIP's contrastive loss and stored in the release; ImageReward's score does not use them.
        self.vision_proj = torch.nn.Linear(vision["hidden_size"], 256)
        self.text_proj = torch.nn.Linear(med_config["hidden_size"], 256)
        self.mlp = aesthetic_mlp(med_config["hidden_size"])

    def load_release(self, state: dict[str, torch.Tensor]) -> None:
        """Strict: every release key lands somewhere, every parameter comes from the release."""
        mapped: dict[str, torch.Tensor] = {}
        position_ids = None
        for k, v in state.items():
            if k == "blip.text_encoder.embeddings.position_ids":
                position_ids = v  # a buffer of older transformers: must be arange, nothing to load
            elif k.startswith("blip.visual_encoder."):
                mapped["visual_encoder." + blip_vision_key(k[len("blip.visual_encoder."):])] = v
            elif k.startswith("blip.text_encoder."):
                mapped["text_encoder." + k[len("blip.text_encoder."):]] = v
            elif k.startswith(("blip.vision_proj.", "blip.text_proj.")):
                mapped[k[len("blip."):]] = v
            elif k.startswith("mlp.layers."):
                mapped["mlp." + k[len("mlp.layers."):]] = v
            else:
                mapped[k] = v  # reported as unexpected below
        if position_ids is not None and not torch.equal(position_ids.flatten().long(),
                                                         torch.arange(position_ids.numel())):
            raise RuntimeError("ImageReward: blip.text_encoder.embeddings.position_ids is not 0..n-1")
        expected = self.state_dict()
        missing, unexpected = sorted(set(expected) - set(mapped)), sorted(set(mapped) - set(expected))
        if missing or unexpected:
            raise RuntimeError(f"ImageReward checkpoint does not match the model: missing keys {missing[:10]} "
                               f"(of {len(missing)}), unexpected keys {unexpected[:10]} (of {len(unexpected)})")
        self.load_state_dict(mapped, strict=True)


class ImageReward(Verifier):
    def __init__(self, name: str, checkpoint: Path, med_config: Path, tokenizer: Path, device: torch.device,
                 dtype: torch.dtype, micro_batch: int, cache: PromptCache, models: list[str],
                 vision: dict | None = None, held_out: bool = False):
        super().__init__(name, "ImageReward (Xu et al. 2023), BLIP ViT-L + BERT cross-attention + MLP, normalised with "
                         f"mean {IMAGEREWARD_MEAN:.4f} std {IMAGEREWARD_STD:.4f}", needs_prompt=True, held_out=held_out,
                         models=models)
        self.net = ImageRewardModel(json.loads(med_config.read_text()), dict(vision or IMAGEREWARD_VIT))
        self.net.load_release(load_torch_state(checkpoint))
        self.net.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.net.mlp.float()  # the release scores its [CLS] feature in fp32 (`.float()` before the MLP)
        self.tokenizer = blip_tokenizer(tokenizer)
        size = self.net.visual_encoder.config.image_size
        self.preprocess = Preprocess(size, size, CLIP_MEAN, CLIP_STD)  # ImageReward's _transform(224)
        self.device, self.dtype, self.micro_batch, self.cache = device, dtype, micro_batch, cache

    @torch.inference_mode()
    def score(self, model, samples, labels, x_predictions, prompts=None):
        images = self.preprocess(to_images(model.to_pixels(samples)))

        def encode(ps: list[str]) -> list:
            t = self.tokenizer(ps, padding="max_length", truncation=True, max_length=IMAGEREWARD_MAX_TOKENS,
                               return_tensors="pt")
            return list(zip(t.input_ids, t.attention_mask))
        toks = self.cache.get_many(self.name, prompts, encode)
        ids = torch.stack([t[0] for t in toks])
        mask = torch.stack([t[1] for t in toks])
        # Per-row images, token ids and masks: rows of calls with different prompts share a micro-batch.
        r = self.forward(self.reward_rows, self.micro_batch, images, ids, mask, name=f"{self.name} network").squeeze(1)
        return ((r - IMAGEREWARD_MEAN) / IMAGEREWARD_STD).cpu().double()

    def reward_rows(self, img: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The release's raw reward of each (image, prompt tokens, mask) row."""
        emb = self.net.visual_encoder(pixel_values=img.to(self.device, self.dtype)).last_hidden_state
        atts = torch.ones(emb.shape[:-1], dtype=torch.long, device=self.device)
        out = self.net.text_encoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                    encoder_hidden_states=emb, encoder_attention_mask=atts)
        return self.net.mlp(out.last_hidden_state[:, 0, :].float())


def blip_tokenizer(folder: Path):
    """BLIP's init_tokenizer: bert-base-uncased plus [DEC] as bos and [ENC] as an extra special token (vocab 30524)."""
    tok = load_tokenizer(folder, "bert")
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_tokens(["[ENC]"], special_tokens=True)
    return tok


class DinoLinearHead(Verifier):
    def __init__(self, name: str, dino: DinoTower, head_path: Path, models: list[str], held_out: bool = False):
        super().__init__(name, f"DINOv2 + official linear head ({head_path.name}): logit of the class",
                         needs_class_label=True, held_out=held_out, models=models)
        state = load_torch_state(head_path)
        state = {k.removeprefix("linear_head."): v for k, v in state.items()}
        if set(state) != {"weight", "bias"}:
            raise RuntimeError(f"{head_path}: expected exactly weight and bias, got {sorted(state)}")
        d = dino.embed_dim
        if state["weight"].shape[1] not in (2 * d, 5 * d):
            raise RuntimeError(f"{head_path}: input width {state['weight'].shape[1]} fits neither 1 layer ({2 * d}) nor "
                               f"4 layers ({5 * d}) of a {d}-wide DINOv2")
        self.layers = 1 if state["weight"].shape[1] == 2 * d else 4
        self.head = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        self.head.load_state_dict(state, strict=True)
        self.head.to(dino.device).eval().requires_grad_(False)
        self.dino, self.num_classes = dino, state["weight"].shape[0]

    @torch.inference_mode()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.dino.linear_input(pixels, self.layers, self.forward).to(self.head.weight.dtype)).float()

    def score(self, model, samples, labels, x_predictions, prompts=None):
        logits = self.logits(model.to_pixels(samples))
        return logits.gather(1, labels.to(logits.device).view(-1, 1)).squeeze(1).cpu().double()


def read_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


class ClipZeroShot(Verifier):
    """Radford et al. 2021's prompt ensemble: per class, the mean of the normalised embeddings of its 80 templated
    names, renormalised; logits = logit_scale * cos (100 for the released CLIPs)."""

    def __init__(self, name: str, clip: ClipTower, classnames: list[str], templates: list[str], models: list[str],
                 weights_cache: Path | None = None, held_out: bool = False):
        super().__init__(name, f"CLIP {clip.folder.name} zero-shot ImageNet classifier ({len(classnames)} classes x "
                         f"{len(templates)} templates): logit of the class", needs_class_label=True,
                         held_out=held_out, models=models)
        self.clip, self.num_classes = clip, len(classnames)
        key = hashlib.sha256(json.dumps([str(clip.folder.resolve()), classnames, templates]).encode()).hexdigest()[:16]
        cached = None if weights_cache is None else weights_cache / f"clip-zeroshot-{key}.safetensors"
        if cached is not None and cached.exists():
            from safetensors.torch import load_file
            self.weights = load_file(str(cached))["weights"].to(clip.device)
        else:
            rows = []
            for c in classnames:
                e = F.normalize(clip.text_embeds([t.format(c) for t in templates]), dim=-1).mean(0)
                rows.append(F.normalize(e, dim=0))
            self.weights = torch.stack(rows)
            if cached is not None:
                from safetensors.torch import save_file
                cached.parent.mkdir(parents=True, exist_ok=True)
                save_file({"weights": self.weights.cpu().contiguous()}, str(cached))
        self.scale = float(clip.model.logit_scale.exp())

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        img = F.normalize(self.clip.image_embeds(pixels, self.forward), dim=-1)
        return self.scale * img @ self.weights.to(img.device).T

    def score(self, model, samples, labels, x_predictions, prompts=None):
        logits = self.logits(model.to_pixels(samples))
        return logits.gather(1, labels.to(logits.device).view(-1, 1)).squeeze(1).cpu().double()


class FeatureSpaceCosine(Verifier):
    """Self-supervised: cosine between the features of the x-prediction at sigma and of the final sample."""

    def __init__(self, name: str, space: str, tower, sigma: float, models: list[str], held_out: bool = False):
        super().__init__(name, f"self-supervised: cosine in {space} feature space, x-prediction at sigma {sigma} vs "
                         "final sample", needs_x_prediction_at=sigma, held_out=held_out, models=models)
        self.tower, self.space = tower, space

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.space == "DINOv2":
            return self.tower.cls_token(pixels, self.forward)
        return self.tower.image_embeds(pixels, self.forward)

    def score(self, model, samples, labels, x_predictions, prompts=None):
        a, b = self.features(model.to_pixels(samples)), self.features(model.to_pixels(x_predictions))
        return F.cosine_similarity(a, b, dim=1).cpu().double()


# ---------- from a config ----------

KINDS = ("aesthetic", "clipscore", "imagereward", "dino-linearhead", "clip-zeroshot", "dino-ssl", "clip-ssl")


def load_paper_verifiers(specs: list[dict], base: Path, device: torch.device, dtype: torch.dtype, micro_batch: int,
                         models: dict, text_micro_batch: int = 1) -> list[Verifier]:
    """Verifiers from config entries {"name", "kind", paths...}; a missing path names its config key.

    CLIP and DINOv2 folders named by several verifiers are loaded once. `models` (optional) lists the model
    names a verifier scores; by default the models it can serve (prompt models for prompt verifiers, models
    with as many classes as the classifier for class verifiers, all for the others)."""
    clips: dict[Path, ClipTower] = {}
    dinos: dict[Path, DinoTower] = {}
    cache = PromptCache(4096)
    out: list[Verifier] = []

    def path(i: int, spec: dict, key: str, default: Path | None = None) -> Path:
        raw = spec.get(key)
        if raw is None and default is None:
            raise ValueError(f"verifiers[{i}].{key}: required for kind {spec.get('kind')!r}")
        p = Path(raw) if raw is not None else default
        p = p if p.is_absolute() else base / p
        if not p.exists():
            raise FileNotFoundError(f"verifiers[{i}].{key}: {p} does not exist")
        return p

    for i, spec in enumerate(specs):
        kind, name = spec.get("kind"), spec.get("name", spec.get("kind"))
        if kind not in KINDS:
            raise ValueError(f"verifiers[{i}].kind: unknown verifier kind {kind!r}; known: {list(KINDS)}")
        held_out = bool(spec.get("held_out", False))

        def clip() -> ClipTower:
            p = path(i, spec, "clip")
            if p not in clips:
                clips[p] = ClipTower(p, device, dtype, micro_batch, text_micro_batch)
            return clips[p]

        def dino() -> DinoTower:
            p = path(i, spec, "dinov2")
            if p not in dinos:
                dinos[p] = DinoTower(p, device, dtype, micro_batch)
            return dinos[p]

        def served(pred) -> list[str]:
            if "models" in spec:
                unknown = [m for m in spec["models"] if m not in models]
                if unknown:
                    raise ValueError(f"verifiers[{i}].models: {unknown} are not loaded; loaded: {sorted(models)}")
                return list(spec["models"])
            return [n for n, m in models.items() if pred(m)]
        text_models = lambda m: getattr(m, "accepts_prompt", False)  # noqa: E731
        if kind == "clipscore":
            v = ClipScore(name, clip(), cache, served(text_models), float(spec.get("w", CLIPSCORE_W)),
                          spec.get("prefix", CLIPSCORE_PREFIX), held_out)
        elif kind == "aesthetic":
            v = LaionAesthetic(name, clip(), path(i, spec, "head"), served(lambda m: True), held_out)
        elif kind == "imagereward":
            v = ImageReward(name, path(i, spec, "checkpoint"), path(i, spec, "med_config"), path(i, spec, "tokenizer"),
                            device, dtype, micro_batch, cache, served(text_models), spec.get("vision"), held_out)
        elif kind == "dino-linearhead":
            head = path(i, spec, "head")
            v = DinoLinearHead(name, dino(), head, [], held_out)
            v.models = served(lambda m: m.num_classes == v.num_classes)
        elif kind == "clip-zeroshot":
            names = read_lines(path(i, spec, "classnames", DATA_DIR / "imagenet" / "classnames.txt"))
            templates = read_lines(path(i, spec, "templates", DATA_DIR / "imagenet" / "clip_templates.txt"))
            cache_dir = spec.get("weights_cache")
            v = ClipZeroShot(name, clip(), names, templates, [], None if cache_dir is None else Path(cache_dir), held_out)
            v.models = served(lambda m: m.num_classes == v.num_classes)
        elif kind == "dino-ssl":
            v = FeatureSpaceCosine(name, "DINOv2", dino(), float(spec.get("sigma", 0.4)), served(lambda m: True), held_out)
        else:  # clip-ssl
            v = FeatureSpaceCosine(name, "CLIP", clip(), float(spec.get("sigma", 0.4)), served(lambda m: True), held_out)
        out.append(v)
    return out

"""State-dict keys and shapes of any model or verifier the worker knows, built on the meta device (no weights allocated).

Names (`python -m noisesearch_worker inspect --list` prints them with a description):
- diffusion models: sit-xl-2, sit-l-2, sit-b-2, sit-fmnist; flux-dev (the FLUX.1-dev transformer); flux-ae (its AE);
  flux-text-encoder (CLIP ViT-L/14 text tower), flux-text-encoder-2 (T5 v1.1 XXL encoder); sd-vae (SD-VAE ft-EMA/MSE);
- feature towers and heads: clip-vit-large-patch14, aesthetic-mlp, imagereward, dinov2-{small,base,large,giant}
  (and -with-registers), dinov2-{size}-linear-head / -linear4-head; the default bundle's verifier-cnn,
  evaluator-resnet;
- verifiers by kind (what a verifier of that kind loads, with its defaults): aesthetic, clipscore, imagereward,
  dino-linearhead, clip-zeroshot, dino-ssl, clip-ssl, and the default bundle's classifier-logit, feature-cosine,
  evaluator-logprob. Several modules are reported with their config-key prefix (`clip.`, `head.`, `dinov2.`).

Every configuration below is the release's own config.json, written out here (the releases are not on disk).
`num_parameters` counts the state dict (what the release files hold): parameters plus persistent buffers, a tensor
tied under two keys (T5's `shared` and `encoder.embed_tokens`) counted once; `state_dict` lists every key.
"""
from __future__ import annotations

from typing import Callable

import torch

from .classifiers import CLASSIFIERS
from .sit import SIT_CONFIGS, SiT

FLUX_NAMES = ("flux-dev", "flux-ae")

# openai/clip-vit-large-patch14 config.json (text and vision towers, projection 768).
CLIP_VIT_L14 = dict(
    text_config=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu"),
    vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu"),
    projection_dim=768)
# black-forest-labs/FLUX.1-dev text_encoder_2/config.json (google/t5-v1_1-xxl encoder).
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, is_encoder_decoder=False)
# ImageReward's med_config.json (BLIP's BERT-base with cross-attention, vocab 30524 after [DEC] and [ENC]).
IMAGEREWARD_MED = dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, max_position_embeddings=512, hidden_act="gelu", layer_norm_eps=1e-12,
                       pad_token_id=0)
# facebook/dinov2-{small,base,large,giant} config.json (patch 14, image 518, layer scale; giant: SwiGLU FFN).
DINOV2 = {
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "giant": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True),
}
# stabilityai/sd-vae-ft-ema (and -mse) config.json.
SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
              up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
              act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=256)
IMAGENET_CLASSES, CLIP_TEMPLATES = 1000, 80


def clip_vit_l14():
    from transformers import CLIPConfig, CLIPModel
    return CLIPModel(CLIPConfig(**CLIP_VIT_L14))


def flux_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(**{k: v for k, v in CLIP_VIT_L14["text_config"].items()}))


def flux_text_encoder_2():
    from transformers import T5Config, T5EncoderModel
    return T5EncoderModel(T5Config(**T5_XXL))


def imagereward():
    from .paper_verifiers import IMAGEREWARD_VIT, ImageRewardModel
    return ImageRewardModel(dict(IMAGEREWARD_MED), dict(IMAGEREWARD_VIT))


def aesthetic_mlp():
    from .paper_verifiers import aesthetic_mlp as mlp
    return mlp(768)


def dinov2(size: str, registers: bool = False):
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel
    cfg = dict(DINOV2[size], patch_size=14, image_size=518, mlp_ratio=4, layerscale_value=1.0)
    if registers:
        return Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**cfg, num_register_tokens=4))
    return Dinov2Model(Dinov2Config(**cfg))


def dinov2_linear_head(size: str, layers: int):
    """The torch-hub head dinov2_vit{s,b,l,g}14_linear{,4}_head.pth: Linear((1 + layers) * D, 1000)."""
    return torch.nn.Linear((1 + layers) * DINOV2[size]["hidden_size"], IMAGENET_CLASSES)


def sd_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(**SD_VAE)


def _flux(name: str):
    from . import flux  # diffusers only when asked
    return (flux.build_transformer(flux.FLUX_CONFIGS["flux-dev"]) if name == "flux-dev"
            else flux.build_autoencoder(flux.FLUX_AE_CONFIGS["flux-ae"]))


Builder = Callable[[], "torch.nn.Module | dict[str, torch.nn.Module]"]


def registry() -> dict[str, tuple[str, Builder]]:
    """name -> (what it is, a builder returning a module or {config-key prefix: module}), built under torch.device."""
    r: dict[str, tuple[str, Builder]] = {}
    for name in SIT_CONFIGS:
        r[name] = (f"SiT config {name}", lambda name=name: SiT(SIT_CONFIGS[name]))
    r["flux-dev"] = ("FLUX.1-dev transformer (FluxTransformer2DModel, transformer/config.json)", lambda: _flux("flux-dev"))
    r["flux-ae"] = ("FLUX.1-dev autoencoder (AutoencoderKL, vae/config.json; ae.safetensors)", lambda: _flux("flux-ae"))
    r["flux-text-encoder"] = ("FLUX.1-dev text_encoder: CLIP ViT-L/14 text tower (CLIPTextModel)", flux_text_encoder)
    r["flux-text-encoder-2"] = ("FLUX.1-dev text_encoder_2: T5 v1.1 XXL encoder (T5EncoderModel)", flux_text_encoder_2)
    r["sd-vae"] = ("SD-VAE (stabilityai/sd-vae-ft-ema or -mse), SiT-XL/2's decoder", sd_vae)
    for name, cls in CLASSIFIERS.items():
        r[name] = (f"default bundle classifier {name}", cls)
    r["clip-vit-large-patch14"] = ("CLIP ViT-L/14 (openai/clip-vit-large-patch14, CLIPModel)", clip_vit_l14)
    r["aesthetic-mlp"] = ("LAION aesthetic predictor head (sac+logos+ava1-l14-linearMSE.pth)", aesthetic_mlp)
    r["imagereward"] = ("ImageReward (ImageReward.pt): BLIP ViT-L/16 + BERT-base with cross-attention + MLP head",
                        imagereward)
    for size in DINOV2:
        r[f"dinov2-{size}"] = (f"DINOv2 ViT-{size[0]}/14 (facebook/dinov2-{size}, Dinov2Model)",
                               lambda size=size: dinov2(size))
        r[f"dinov2-{size}-with-registers"] = (f"DINOv2 ViT-{size[0]}/14 with 4 registers (facebook/dinov2-with-"
                                              f"registers-{size})", lambda size=size: dinov2(size, True))
        for layers, suffix in ((1, "linear"), (4, "linear4")):
            r[f"dinov2-{size}-{suffix}-head"] = (
                f"DINOv2 ViT-{size[0]}/14 ImageNet head (dinov2_vit{size[0]}14_{suffix}_head.pth)",
                lambda size=size, layers=layers: dinov2_linear_head(size, layers))
    # Verifier kinds, as a config entry with default paths would load them (DINOv2-L, 1-layer head).
    r["aesthetic"] = ("verifier: LAION aesthetic MLP over CLIP ViT-L/14", lambda: {"clip": clip_vit_l14(),
                                                                                 "head": aesthetic_mlp()})
    r["clipscore"] = ("verifier: CLIPScore with CLIP ViT-L/14", lambda: {"clip": clip_vit_l14()})
    r["clip-zeroshot"] = ("verifier: CLIP ViT-L/14 zero-shot ImageNet (1000 x 80 prompts -> a derived 1000 x 768 "
                          "classifier, computed at start-up, not a release tensor)", lambda: {"clip": clip_vit_l14()})
    r["clip-ssl"] = ("verifier: self-supervised cosine in CLIP ViT-L/14 image-embedding space",
                     lambda: {"clip": clip_vit_l14()})
    r["dino-linearhead"] = ("verifier: DINOv2-L + official 1-layer linear head", lambda: {
        "dinov2": dinov2("large"), "head": dinov2_linear_head("large", 1)})
    r["dino-ssl"] = ("verifier: self-supervised cosine in DINOv2-L [CLS] space", lambda: {"dinov2": dinov2("large")})
    r["classifier-logit"] = ("default bundle verifier: verifier-cnn logit", CLASSIFIERS["verifier-cnn"])
    r["feature-cosine"] = ("default bundle verifier: verifier-cnn feature cosine", CLASSIFIERS["verifier-cnn"])
    r["evaluator-logprob"] = ("default bundle held-out verifier: evaluator-resnet log-prob",
                              CLASSIFIERS["evaluator-resnet"])
    return r


def names() -> dict[str, str]:
    return {name: what for name, (what, _) in registry().items()}


def inspect(name: str) -> dict:
    reg = registry()
    if name not in reg:
        raise KeyError(f"unknown model {name!r}; known: {sorted(reg)}")
    what, build = reg[name]
    with torch.device("meta"):
        built = build()
    parts = built if isinstance(built, dict) else {"": built}
    state, distinct = {}, {}
    for prefix, module in parts.items():
        for k, v in module.state_dict(keep_vars=True).items():
            state[f"{prefix}.{k}" if prefix else k] = v
            distinct[id(v)] = v  # tied weights are one tensor under several keys
    return {"model": name, "description": what,
            "state_dict": {k: list(v.shape) for k, v in state.items()},
            "num_parameters": sum(v.numel() for v in distinct.values())}

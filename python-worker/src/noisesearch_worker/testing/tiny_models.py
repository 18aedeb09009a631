"""Tiny random models made through the same libraries as the releases, saved in the releases' layouts.

Nothing is downloaded: configs are written here, weights are random (seeded), and every folder is loaded back
offline by the worker's own loaders. Used by the tests and by `python -m noisesearch_worker.testing.make_tiny_flux`
(the orchestrator's FLUX e2e test). Needs diffusers and transformers (the worker's `latent` extra).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..sit import SiT, SiTParams

# ---------- tokenizers (real BPE / Unigram models, tiny vocabularies) ----------

LETTERS = "abcdefghijklmnopqrstuvwxyz"
WORDS = ["a", "cat", "dog", "photo", "of", "red", "car", "the", "depicts"]


def clip_tokenizer(max_length: int = 77):
    """A CLIP BPE tokenizer: single letters (word-final and not), whole words as merges."""
    from transformers import CLIPTokenizer
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in LETTERS + ".,'":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = []
    for w in WORDS:
        if len(w) < 2:
            continue
        cur = w[0]
        for j, ch in enumerate(w[1:], start=1):
            nxt = ch + ("</w>" if j == len(w) - 1 else "")
            merges.append((cur, nxt))
            cur = cur + nxt
            vocab.setdefault(cur, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def t5_tokenizer():
    """A T5 Unigram tokenizer: <pad>=0, </s>=1, <unk>=2, then ▁word pieces and letters."""
    from transformers import T5Tokenizer
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -1.0) for w in WORDS] + [("\u2581", -2.0)] + [(c, -3.0) for c in LETTERS + ".,'"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


BERT_VOCAB = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + list(LETTERS)
                                 + ["##" + c for c in LETTERS] + [".", ",", "'"]))


def bert_tokenizer(folder: Path):
    """A WordPiece tokenizer in bert-base-uncased's layout, saved to `folder`: vocab.txt (one token a line, the id
    is the line number) read back by BertTokenizer.from_pretrained, as the release is, plus the tokenizer.json and
    tokenizer_config.json that save_pretrained writes. Whole words of WORDS are one token each; any other word of
    letters splits into a letter and ##letters; nothing of LETTERS becomes [UNK]."""
    from transformers import BertTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    tok = BertTokenizer.from_pretrained(str(folder), do_lower_case=True, local_files_only=True)
    if len(tok) != len(BERT_VOCAB):
        raise RuntimeError(f"bert tokenizer: {len(tok)} tokens from a vocab.txt of {len(BERT_VOCAB)}")
    tok.save_pretrained(str(folder))
    return tok


# ---------- SiT ----------

# A 4-channel latent SiT laid out as SiT-XL/2 (learn_sigma, a null class for guidance): 8x8 latents, 5 classes.
TINY_SIT = SiTParams(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=5)


def random_sit(params, seed: int = 5):
    """The official initialisation, then random output layers, so that every channel carries signal."""
    net = SiT(params)
    net.initialize_weights()
    _jiggle(net.final_layer, seed)
    return net.eval()


# ---------- FLUX ----------

TINY_FLUX = dict(patch_size=1, in_channels=16, out_channels=None, num_layers=2, num_single_layers=2,
                 attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                 guidance_embeds=True, axes_dims_rope=(4, 6, 6))
TINY_AE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
               up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 32], layers_per_block=1,
               act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=16, scaling_factor=0.3611,
               shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, force_upcast=True,
               mid_block_add_attention=True)


def _jiggle(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere (diffusers zero-initialises some output layers)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def flux_parts(seed: int = 0) -> dict:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
    torch.manual_seed(seed)
    clip_tok, t5_tok = clip_tokenizer(), t5_tokenizer()
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                                 decoder_start_token_id=0)).eval()
    transformer = FluxTransformer2DModel(**TINY_FLUX).eval()
    _jiggle(transformer, seed + 1)
    vae = AutoencoderKL(**TINY_AE).eval()
    return dict(transformer=transformer, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5,
                tokenizer_2=t5_tok)


def save_flux_release(root: Path, parts: dict) -> Path:
    """The diffusers release layout, plus the BFL single files flux1-dev.safetensors and ae.safetensors beside it."""
    for sub, obj in parts.items():
        obj.save_pretrained(str(root / sub))
    (root / "scheduler").mkdir(parents=True, exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
        "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True}))
    save_file(to_bfl_transformer(parts["transformer"].state_dict()), str(root / "flux1-dev.safetensors"))
    save_file(to_bfl_autoencoder(parts["vae"].state_dict()), str(root / "ae.safetensors"))
    return root


def to_bfl_transformer(sd: dict) -> dict:
    """diffusers FluxTransformer2DModel keys -> BFL flux1-dev keys (the inverse of the worker's conversion)."""
    sd = {k: v.detach().clone().contiguous() for k, v in sd.items()}
    out = {}
    for w in ("weight", "bias"):
        out[f"time_in.in_layer.{w}"] = sd.pop(f"time_text_embed.timestep_embedder.linear_1.{w}")
        out[f"time_in.out_layer.{w}"] = sd.pop(f"time_text_embed.timestep_embedder.linear_2.{w}")
        out[f"vector_in.in_layer.{w}"] = sd.pop(f"time_text_embed.text_embedder.linear_1.{w}")
        out[f"vector_in.out_layer.{w}"] = sd.pop(f"time_text_embed.text_embedder.linear_2.{w}")
        out[f"guidance_in.in_layer.{w}"] = sd.pop(f"time_text_embed.guidance_embedder.linear_1.{w}")
        out[f"guidance_in.out_layer.{w}"] = sd.pop(f"time_text_embed.guidance_embedder.linear_2.{w}")
        out[f"txt_in.{w}"] = sd.pop(f"context_embedder.{w}")
        out[f"img_in.{w}"] = sd.pop(f"x_embedder.{w}")
        out[f"final_layer.linear.{w}"] = sd.pop(f"proj_out.{w}")
        scale, shift = sd.pop(f"norm_out.linear.{w}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{w}"] = torch.cat([shift, scale]).contiguous()
    n_double = len({k.split(".")[1] for k in sd if k.startswith("transformer_blocks.")})
    n_single = len({k.split(".")[1] for k in sd if k.startswith("single_transformer_blocks.")})
    for i in range(n_double):
        d, s = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for w in ("weight", "bias"):
            out[f"{s}img_mod.lin.{w}"] = sd.pop(f"{d}norm1.linear.{w}")
            out[f"{s}txt_mod.lin.{w}"] = sd.pop(f"{d}norm1_context.linear.{w}")
            out[f"{s}img_attn.qkv.{w}"] = torch.cat([sd.pop(f"{d}attn.to_{x}.{w}") for x in "qkv"])
            out[f"{s}txt_attn.qkv.{w}"] = torch.cat([sd.pop(f"{d}attn.add_{x}_proj.{w}") for x in "qkv"])
            out[f"{s}img_attn.proj.{w}"] = sd.pop(f"{d}attn.to_out.0.{w}")
            out[f"{s}txt_attn.proj.{w}"] = sd.pop(f"{d}attn.to_add_out.{w}")
            out[f"{s}img_mlp.0.{w}"] = sd.pop(f"{d}ff.net.0.proj.{w}")
            out[f"{s}img_mlp.2.{w}"] = sd.pop(f"{d}ff.net.2.{w}")
            out[f"{s}txt_mlp.0.{w}"] = sd.pop(f"{d}ff_context.net.0.proj.{w}")
            out[f"{s}txt_mlp.2.{w}"] = sd.pop(f"{d}ff_context.net.2.{w}")
        out[f"{s}img_attn.norm.query_norm.scale"] = sd.pop(f"{d}attn.norm_q.weight")
        out[f"{s}img_attn.norm.key_norm.scale"] = sd.pop(f"{d}attn.norm_k.weight")
        out[f"{s}txt_attn.norm.query_norm.scale"] = sd.pop(f"{d}attn.norm_added_q.weight")
        out[f"{s}txt_attn.norm.key_norm.scale"] = sd.pop(f"{d}attn.norm_added_k.weight")
    for i in range(n_single):
        d, s = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for w in ("weight", "bias"):
            out[f"{s}modulation.lin.{w}"] = sd.pop(f"{d}norm.linear.{w}")
            out[f"{s}linear1.{w}"] = torch.cat([sd.pop(f"{d}attn.to_{x}.{w}") for x in "qkv"] + [sd.pop(f"{d}proj_mlp.{w}")])
            out[f"{s}linear2.{w}"] = sd.pop(f"{d}proj_out.{w}")
        out[f"{s}norm.query_norm.scale"] = sd.pop(f"{d}attn.norm_q.weight")
        out[f"{s}norm.key_norm.scale"] = sd.pop(f"{d}attn.norm_k.weight")
    assert not sd, sorted(sd)
    return out


def to_bfl_autoencoder(sd: dict) -> dict:
    """diffusers AutoencoderKL keys -> the LDM/BFL ae.safetensors keys (the inverse of diffusers' conversion)."""
    n_up = len({k.split(".")[2] for k in sd if k.startswith("decoder.up_blocks.")})
    out = {}
    for k, v in sd.items():
        v = v.detach().clone().contiguous()
        nk = k
        nk = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)", r"encoder.down.\1.block.\2", nk)
        nk = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", nk)
        nk = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)",
                    lambda m: f"decoder.up.{n_up - 1 - int(m.group(1))}.block.{m.group(2)}", nk)
        nk = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0",
                    lambda m: f"decoder.up.{n_up - 1 - int(m.group(1))}.upsample", nk)
        nk = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m.group(1)) + 1}", nk)
        nk = nk.replace("mid_block.attentions.0", "mid.attn_1")
        nk = nk.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        if ".mid.attn_1." in nk:
            nk = (nk.replace("group_norm", "norm").replace("to_q", "q").replace("to_k", "k").replace("to_v", "v")
                  .replace("to_out.0", "proj_out"))
            if v.ndim == 2:
                v = v[:, :, None, None].contiguous()  # the LDM attention projections are 1x1 convolutions
        out[nk] = v
    return out


def flux_spec(root: Path, name: str = "flux-tiny", single_file: bool = False, **extra) -> dict:
    spec = {"name": name, "family": "flux", "path": str(root), "height": 16, "width": 16, **extra}
    if single_file:
        spec.update(transformer=str(root / "flux1-dev.safetensors"), vae=str(root / "ae.safetensors"),
                    config="flux-tiny", vae_config="flux-tiny-ae")
    return spec


# ---------- the text-to-image verifiers' releases ----------

# A tiny BLIP ViT (ImageReward's visual encoder) and a tiny med BERT config (ImageReward's med_config.json layout).
TINY_VIT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                patch_size=4)
TINY_MED = dict(architectures=["BertModel"], hidden_act="gelu", hidden_size=32, intermediate_size=37,
                layer_norm_eps=1e-12, max_position_embeddings=40, model_type="bert", num_attention_heads=2,
                num_hidden_layers=1, pad_token_id=0, type_vocab_size=2, encoder_width=32, add_cross_attention=True)


def save_clip_release(folder: Path, seed: int = 0, image_size: int = 16) -> Path:
    """openai/clip-vit-large-patch14's layout: CLIPModel + tokenizer + preprocessor_config.json (CLIP statistics)."""
    from transformers import CLIPConfig, CLIPModel
    from ..paper_verifiers import CLIP_MEAN, CLIP_STD
    torch.manual_seed(seed)
    tok = clip_tokenizer()
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=4), projection_dim=16))
    clip.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": image_size, "width": image_size}, "do_center_crop": True, "do_normalize": True,
        "do_resize": True, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD), "resample": 3,
        "size": {"shortest_edge": image_size}}))
    return folder


def save_aesthetic_head(path: Path, embed_dim: int = 16, seed: int = 3) -> Path:
    """The LAION aesthetic MLP as its .pth stores it (keys `layers.N.*`)."""
    from ..paper_verifiers import aesthetic_mlp
    mlp = _jiggle(aesthetic_mlp(embed_dim), seed)
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, path)
    return path


def imagereward_release_state(net) -> dict:
    """ImageRewardModel -> the ImageReward.pt key layout (BLIP's timm ViT names, `blip.` / `mlp.layers.` prefixes)."""
    from ..paper_verifiers import blip_vision_key
    inverse = {}
    for k in net.visual_encoder.state_dict():
        blip = k.replace("embeddings.class_embedding", "cls_token").replace("embeddings.position_embedding", "pos_embed")
        blip = blip.replace("embeddings.patch_embedding", "patch_embed.proj").replace("post_layernorm", "norm")
        blip = blip.replace("encoder.layers.", "blocks.").replace("layer_norm1", "norm1").replace("layer_norm2", "norm2")
        blip = blip.replace("self_attn.qkv", "attn.qkv").replace("self_attn.projection", "attn.proj")
        assert blip_vision_key(blip) == k  # our loader maps it back exactly
        inverse[k] = blip
    out = {f"blip.visual_encoder.{inverse[k]}": v.clone() for k, v in net.visual_encoder.state_dict().items()}
    out.update({f"blip.text_encoder.{k}": v.clone() for k, v in net.text_encoder.state_dict().items()})
    out.update({f"blip.{k}": v.clone() for k, v in net.state_dict().items() if k.startswith(("vision_proj", "text_proj"))})
    out.update({f"mlp.layers.{k[len('mlp.'):]}": v.clone() for k, v in net.state_dict().items() if k.startswith("mlp.")})
    n = net.text_encoder.config.max_position_embeddings
    out["blip.text_encoder.embeddings.position_ids"] = torch.arange(n).view(1, -1)
    return out


def save_imagereward_release(root: Path, seed: int = 4) -> dict:
    """ImageReward.pt (BLIP layout), med_config.json and a bert-base-uncased-style tokenizer folder under `root`."""
    from ..paper_verifiers import ImageRewardModel
    btok = bert_tokenizer(root / "bert-base-uncased")
    med = dict(TINY_MED, vocab_size=len(btok) + 2)  # + [DEC] and [ENC], as BLIP's init_tokenizer adds
    (root / "med_config.json").write_text(json.dumps(med))
    net = _jiggle(ImageRewardModel(med, TINY_VIT), seed).eval()
    torch.save(imagereward_release_state(net), root / "ImageReward.pt")
    return {"checkpoint": str(root / "ImageReward.pt"), "med_config": str(root / "med_config.json"),
            "tokenizer": str(root / "bert-base-uncased"), "vision": dict(TINY_VIT)}

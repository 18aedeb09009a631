"""The paper's verifiers on tiny random weights in their releases' layouts, loaded offline by the worker's loader;
needs enforced by the engine; the SiT-XL/2 path (SD-VAE decode -> preprocessing -> scores) and the FLUX path."""
import copy
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch_worker import flux, paper_verifiers as pv
from noisesearch_worker.config import WorkerConfig, build_engine
from noisesearch_worker.compute import Compute
from noisesearch_worker.engine import BadRequest
from noisesearch_worker.models import run_fixed_batches
from noisesearch_worker.scheduler import CALL, DEVICE_LOCK, Cancelled
from noisesearch_worker.text import FluxTextEncoder, PromptCache
from noisesearch_worker.sit import SIT_CONFIGS
from tiny_models import (TINY_AE, TINY_FLUX, TINY_SIT, bert_tokenizer, clip_tokenizer, flux_parts, flux_spec,
                         imagereward_release_state, random_sit, save_flux_release)

CPU = torch.device("cpu")
CLASSES = ["cat", "dog", "car", "photo", "red"]
TEMPLATES = ["a photo of a {}.", "a {}.", "the {}."]
TINY_VIT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                patch_size=4)
MED = dict(architectures=["BertModel"], hidden_act="gelu", hidden_size=32, intermediate_size=37, layer_norm_eps=1e-12,
           max_position_embeddings=40, model_type="bert", num_attention_heads=2, num_hidden_layers=1, pad_token_id=0,
           type_vocab_size=2, encoder_width=32, add_cross_attention=True)


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    from diffusers import AutoencoderKL
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model
    root = tmp_path_factory.mktemp("releases")
    torch.manual_seed(0)
    # CLIP ViT (openai/clip-vit-large-patch14 layout: model + tokenizer + preprocessor_config.json)
    tok = clip_tokenizer()
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=4), projection_dim=16))
    clip.save_pretrained(str(root / "clip"))
    tok.save_pretrained(str(root / "clip"))
    (root / "clip" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 16, "width": 16}, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_mean": list(pv.CLIP_MEAN), "image_std": list(pv.CLIP_STD), "resample": 3, "size": {"shortest_edge": 16}}))
    # DINOv2 (facebook/dinov2-* layout) with Resize(20) -> CenterCrop(16), like the release's 256 -> 224, and a
    # 5 x 5 grid of position embeddings interpolated to the crop's 4 x 4, like the release's 37 x 37 to 16 x 16
    dino = _randomise(Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                               intermediate_size=37, patch_size=4, image_size=20)), 1)
    dino.save_pretrained(str(root / "dinov2"))
    (root / "dinov2" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 16, "width": 16}, "image_mean": list(pv.IMAGENET_MEAN), "image_std": list(pv.IMAGENET_STD),
        "resample": 3, "size": {"shortest_edge": 20}}))
    # torch-hub linear heads: 1 layer ([cls, mean patch] = 2 x 32) and 4 layers (5 x 32), 5 classes
    g = torch.Generator().manual_seed(2)
    torch.save({"weight": torch.randn(5, 64, generator=g), "bias": torch.randn(5, generator=g)}, root / "dino_linear_head.pth")
    torch.save({"weight": torch.randn(5, 160, generator=g), "bias": torch.randn(5, generator=g)}, root / "dino_linear4_head.pth")
    # LAION aesthetic MLP over the (16-d) CLIP image embedding, as its .pth stores it ("layers.N.*")
    mlp = _randomise(pv.aesthetic_mlp(16), 3)
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, root / "aesthetic.pth")
    # ImageReward: med_config.json, ImageReward.pt in BLIP's layout, a bert-base-uncased-style tokenizer folder
    btok = bert_tokenizer(root / "bert-base-uncased")
    med = dict(MED, vocab_size=len(btok) + 2)  # + [DEC] and [ENC], as BLIP's init_tokenizer adds
    (root / "med_config.json").write_text(json.dumps(med))
    net = _randomise(pv.ImageRewardModel(med, TINY_VIT), 4).eval()
    torch.save(imagereward_release_state(net), root / "ImageReward.pt")
    # SiT + SD-VAE (sd-vae-ft-ema folder layout: 4 latent channels, here 2x down: 8x8 latents -> 16x16 images)
    torch.save({"ema": random_sit(TINY_SIT).state_dict()}, root / "SiT-tiny.pt")
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                  up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[32, 32], layers_per_block=1,
                  latent_channels=4, norm_num_groups=32, sample_size=16, scaling_factor=0.18215).save_pretrained(
        str(root / "sd-vae-ft-ema"))
    save_flux_release(root / "FLUX.1-tiny", flux_parts(seed=7))
    return root


def verifier_specs(root: Path) -> list:
    return [
        {"name": "aesthetic", "kind": "aesthetic", "clip": str(root / "clip"), "head": str(root / "aesthetic.pth")},
        {"name": "clipscore", "kind": "clipscore", "clip": str(root / "clip")},
        {"name": "imagereward", "kind": "imagereward", "checkpoint": str(root / "ImageReward.pt"),
         "med_config": str(root / "med_config.json"), "tokenizer": str(root / "bert-base-uncased"), "vision": TINY_VIT},
        {"name": "dino-linearhead", "kind": "dino-linearhead", "dinov2": str(root / "dinov2"),
         "head": str(root / "dino_linear_head.pth")},
        {"name": "dino-linear4head", "kind": "dino-linearhead", "dinov2": str(root / "dinov2"),
         "head": str(root / "dino_linear4_head.pth")},
        {"name": "clip-zeroshot", "kind": "clip-zeroshot", "clip": str(root / "clip"), "classnames": str(root / "classes.txt"),
         "templates": str(root / "templates.txt"), "weights_cache": str(root / "zs-cache")},
        {"name": "dino-ssl", "kind": "dino-ssl", "dinov2": str(root / "dinov2")},
        {"name": "clip-ssl", "kind": "clip-ssl", "clip": str(root / "clip")},
    ]


@pytest.fixture(scope="module")
def engine(releases, tmp_path_factory):
    (releases / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (releases / "templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    SIT_CONFIGS["sit-tiny"] = TINY_SIT
    flux.FLUX_CONFIGS["flux-tiny"], flux.FLUX_AE_CONFIGS["flux-tiny-ae"] = TINY_FLUX, TINY_AE
    cfg = tmp_path_factory.mktemp("cfg") / "worker.json"
    cfg.write_text(json.dumps({
        "device": "cpu", "max_batch": 4, "verifier_bundles": [],
        "models": [{"name": "sit-tiny", "config": "sit-tiny", "checkpoint": str(releases / "SiT-tiny.pt"),
                    "vae": str(releases / "sd-vae-ft-ema"), "default_solver": {"solver": "heun", "steps": 4}},
                   flux_spec(releases / "FLUX.1-tiny", single_file=True)],
        "verifiers": verifier_specs(releases)}))
    try:
        yield build_engine(WorkerConfig.load(str(cfg)))
    finally:
        SIT_CONFIGS.pop("sit-tiny", None)
        flux.FLUX_CONFIGS.pop("flux-tiny", None)
        flux.FLUX_AE_CONFIGS.pop("flux-tiny-ae", None)


# ---------- preprocessing ----------

def test_preprocessing_matches_the_clip_release_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8))
    ours = pv.Preprocess(224, 224, pv.CLIP_MEAN, pv.CLIP_STD)([img])
    ref = CLIPImageProcessorPil()(images=[img], return_tensors="pt").pixel_values
    assert ours.shape == ref.shape == (1, 3, 224, 224)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_images_are_quantised_like_the_worker_pngs():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    img = pv.to_images(x)[0]
    assert np.asarray(img)[0, :, 0].tolist() == [0, 64, 128, 255, 255]  # round((x + 1) * 127.5)


# ---------- each verifier ----------

def test_what_each_verifier_needs(engine):
    d = {v.name: v for v in engine.describe().verifiers}
    assert d["clipscore"].needs_prompt and d["imagereward"].needs_prompt and not d["aesthetic"].needs_prompt
    assert d["dino-linearhead"].needs_class_label and d["clip-zeroshot"].needs_class_label
    assert d["dino-ssl"].needs_x_prediction_at == pytest.approx(0.4) and d["clip-ssl"].needs_x_prediction_at == pytest.approx(0.4)
    assert list(d["clipscore"].models) == ["flux-tiny"] and list(d["dino-linearhead"].models) == ["sit-tiny"]
    assert list(d["clip-zeroshot"].models) == ["sit-tiny"] and set(d["dino-ssl"].models) == {"sit-tiny", "flux-tiny"}


def _pixels(n=3, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class PixelModel:
    """Stands in for a model whose samples are already pixels."""
    num_classes = 5

    def to_pixels(self, x):
        return x


def test_clipscore_is_hessel_et_al_with_w_2_5(engine):
    v = engine.verifiers["clipscore"]
    px, prompts = _pixels(), ["a cat", "a red car", "a dog"]
    got = v.score(PixelModel(), px, None, None, prompts=prompts)
    clip = v.clip.model
    with torch.no_grad():
        img = clip.visual_projection(clip.vision_model(pixel_values=v.clip.preprocess(pv.to_images(px))).pooler_output)
        ids = v.clip.tokenizer(["A photo depicts " + p for p in prompts], padding="max_length", max_length=77,
                               return_tensors="pt").input_ids
        txt = clip.text_projection(clip.text_model(input_ids=ids).pooler_output)
    want = 2.5 * F.cosine_similarity(img, txt).clamp(min=0)
    torch.testing.assert_close(got, want.double(), atol=1e-6, rtol=0)
    assert got.shape == (3,) and got.dtype == torch.float64
    rev = v.score(PixelModel(), px.flip(0), None, None, prompts=prompts[::-1])
    torch.testing.assert_close(rev, got.flip(0))


def test_aesthetic_is_the_mlp_over_normalised_clip_embeddings(engine):
    v = engine.verifiers["aesthetic"]
    px = _pixels(seed=1)
    emb = F.normalize(v.clip.image_embeds(px), dim=-1)
    with torch.no_grad():
        want = v.mlp(emb).squeeze(1)
    got = v.score(PixelModel(), px, None, None)
    torch.testing.assert_close(got, want.double())
    assert torch.equal(v.score(PixelModel(), px.flip(0), None, None), got.flip(0))


def _blip_vit_by_hand(state: dict, images: torch.Tensor, heads: int) -> torch.Tensor:
    """BLIP's ViT forward written from its own parameter names (timm layout), to check the key mapping."""
    p = {k[len("blip.visual_encoder."):]: v for k, v in state.items() if k.startswith("blip.visual_encoder.")}
    x = F.conv2d(images, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=p["patch_embed.proj.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([p["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + p["pos_embed"]
    d = x.shape[-1]
    i = 0
    while f"blocks.{i}.norm1.weight" in p:
        b = lambda n: p[f"blocks.{i}.{n}"]  # noqa: E731
        h = F.layer_norm(x, (d,), b("norm1.weight"), b("norm1.bias"), 1e-6)
        q, k, v = F.linear(h, b("attn.qkv.weight"), b("attn.qkv.bias")).view(x.shape[0], -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) * (d // heads) ** -0.5, dim=-1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(x.shape), b("attn.proj.weight"), b("attn.proj.bias"))
        h = F.layer_norm(x, (d,), b("norm2.weight"), b("norm2.bias"), 1e-6)
        x = x + F.linear(F.gelu(F.linear(h, b("mlp.fc1.weight"), b("mlp.fc1.bias"))), b("mlp.fc2.weight"), b("mlp.fc2.bias"))
        i += 1
    return F.layer_norm(x, (d,), p["norm.weight"], p["norm.bias"], 1e-6)


def test_imagereward_loads_strictly_and_scores_as_the_release(engine, releases):
    v = engine.verifiers["imagereward"]
    state = torch.load(releases / "ImageReward.pt", weights_only=True)
    px, prompts = _pixels(seed=2), ["a cat", "a photo of a dog", "a red car"]
    images = pv.Preprocess(16, 16, pv.CLIP_MEAN, pv.CLIP_STD)(pv.to_images(px))
    with torch.no_grad():
        emb = v.net.visual_encoder(pixel_values=images).last_hidden_state
        torch.testing.assert_close(emb, _blip_vit_by_hand(state, images, heads=2), atol=1e-5, rtol=1e-5)
        tok = v.tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        assert tok.input_ids.shape == (3, 35) and len(v.tokenizer) == state["blip.text_encoder.embeddings.word_embeddings.weight"].shape[0]
        vocab = v.tokenizer.get_vocab()
        words = [vocab[w] for w in ("[CLS]", "a", "photo", "of", "a", "dog", "[SEP]")]
        assert tok.input_ids[1, :7].tolist() == words and tok.attention_mask[1].sum() == 7  # words, not [UNK]s
        assert v.tokenizer.unk_token_id not in tok.input_ids
        out = v.net.text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask, encoder_hidden_states=emb,
                                 encoder_attention_mask=torch.ones(emb.shape[:-1], dtype=torch.long))
        want = (v.net.mlp(out.last_hidden_state[:, 0]).squeeze(1) - 0.16717362830052426) / 1.0333394966054072
    got = v.score(PixelModel(), px, None, None, prompts=prompts)
    torch.testing.assert_close(got, want.double(), atol=1e-4, rtol=1e-5)  # batch of 3 vs the fixed micro-batch of 4
    torch.testing.assert_close(v.score(PixelModel(), px.flip(0), None, None, prompts=prompts[::-1]), got.flip(0))


def test_imagereward_refuses_a_missing_or_unexpected_key(releases, tmp_path):
    state = torch.load(releases / "ImageReward.pt", weights_only=True)
    med = json.loads((releases / "med_config.json").read_text())
    for mutate, word in ((lambda s: s.pop("blip.text_encoder.encoder.layer.0.crossattention.self.key.weight"), "missing"),
                         (lambda s: s.__setitem__("blip.itm_head.weight", torch.zeros(2, 32)), "unexpected")):
        s = dict(state)
        mutate(s)
        with pytest.raises(RuntimeError, match=word + r" keys \[.*(crossattention.self.key.weight|itm_head)"):
            pv.ImageRewardModel(med, TINY_VIT).load_release(s)


def test_dino_linear_heads_one_and_four_layers(engine):
    px = _pixels(seed=3)
    dino = engine.verifiers["dino-linearhead"].dino
    images = dino.preprocess(pv.to_images(px))
    assert images.shape == (3, 3, 16, 16)
    with torch.no_grad():
        out = dino.model(pixel_values=images, output_hidden_states=True)
        last = out.last_hidden_state
        one = torch.cat([last[:, 0], last[:, 1:].mean(1)], dim=1)
        normed = [dino.model.layernorm(h) for h in out.hidden_states[-4:]]
        four = torch.cat([h[:, 0] for h in normed] + [normed[-1][:, 1:].mean(1)], dim=1)
    labels = torch.tensor([0, 4, 2])
    for name, feats in (("dino-linearhead", one), ("dino-linear4head", four)):
        v = engine.verifiers[name]
        assert v.layers == (1 if name == "dino-linearhead" else 4)
        want = v.head(feats).gather(1, labels.view(-1, 1)).squeeze(1)
        torch.testing.assert_close(v.score(PixelModel(), px, labels, None), want.double(), atol=1e-5, rtol=1e-5)


def official_interpolate_pos_encoding(pos_embed, x, w, h, patch_size, interpolate_offset, interpolate_antialias):
    """A copy of the official formula: facebookresearch/dinov2 dinov2/models/vision_transformer.py
    `DinoVisionTransformer.interpolate_pos_encoding` (lines 180-212 at b8931f7), the module's attributes as arguments."""
    previous_dtype = x.dtype
    npatch = x.shape[1] - 1
    N = pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return pos_embed
    pos_embed = pos_embed.float()
    class_pos_embed = pos_embed[:, 0]
    patch_pos_embed = pos_embed[:, 1:]
    dim = x.shape[-1]
    w0 = w // patch_size
    h0 = h // patch_size
    M = int(math.sqrt(N))
    assert N == M * M
    kwargs = {}
    if interpolate_offset:
        sx = float(w0 + interpolate_offset) / M
        sy = float(h0 + interpolate_offset) / M
        kwargs["scale_factor"] = (sx, sy)
    else:
        kwargs["size"] = (w0, h0)
    patch_pos_embed = F.interpolate(patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2), mode="bicubic",
                                    antialias=interpolate_antialias, **kwargs)
    assert (w0, h0) == patch_pos_embed.shape[-2:]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1).to(previous_dtype)


@pytest.mark.parametrize("registers", [False, True])
def test_dinov2_interpolates_position_embeddings_as_the_official_model(tmp_path, registers):
    """The release's 37 x 37 grid (518 px / 14) read at 224 px (16 x 16): here patch 4, 148 px -> 64 px."""
    from transformers import (Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel,
                              AutoModel)
    cfg_cls, cls = (Dinov2WithRegistersConfig, Dinov2WithRegistersModel) if registers else (Dinov2Config, Dinov2Model)
    extra = {"num_register_tokens": 4} if registers else {}
    torch.manual_seed(6)
    _randomise(cls(cfg_cls(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                           patch_size=4, image_size=148, **extra)), 6).save_pretrained(str(tmp_path))
    tower = pv.DinoTower(tmp_path, CPU, torch.float32, 2)
    offset, antialias = (0.0, True) if registers else (0.1, False)  # dinov2/hub/backbones.py, _reg and plain
    emb = tower.model.embeddings
    pos = emb.position_embeddings
    for h, w in ((64, 64), (64, 80), (148, 148)):
        tokens = torch.zeros(1, 1 + (h // 4) * (w // 4), 32)
        want = official_interpolate_pos_encoding(pos, tokens, h, w, 4, offset, antialias)
        assert torch.equal(emb.interpolate_pos_encoding(tokens, h, w), want), (h, w)
    # The whole forward uses it: the same folder through transformers with the official copy patched in.
    reference = AutoModel.from_pretrained(str(tmp_path)).eval()
    stock = AutoModel.from_pretrained(str(tmp_path)).eval()
    reference.embeddings.interpolate_pos_encoding = lambda x, h, w: official_interpolate_pos_encoding(
        reference.embeddings.position_embeddings, x, h, w, 4, offset, antialias)
    px = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = tower.model(pixel_values=px).last_hidden_state
        assert torch.equal(got, reference(pixel_values=px).last_hidden_state)
        theirs = stock(pixel_values=px).last_hidden_state
    if registers:  # transformers' registers model already matches (size=, antialias), so nothing changes
        assert torch.equal(got, theirs)
    else:  # transformers' size=(16, 16) is not the official scale factor (16 + 0.1) / 37
        assert ((got - theirs).norm() / theirs.norm()).item() > 1e-4


def test_clip_zero_shot_uses_the_template_ensemble_and_caches_it(engine, releases):
    v = engine.verifiers["clip-zeroshot"]
    assert v.weights.shape == (5, 16) and v.num_classes == 5
    e = F.normalize(v.clip.text_embeds([t.format("dog") for t in TEMPLATES]), dim=-1).mean(0)
    torch.testing.assert_close(v.weights[1], F.normalize(e, dim=0))
    px, labels = _pixels(seed=4), torch.tensor([1, 1, 3])
    logits = v.logits(px)
    torch.testing.assert_close(v.score(PixelModel(), px, labels, None), logits[[0, 1, 2], [1, 1, 3]].double())
    assert math.isclose(v.scale, float(v.clip.model.logit_scale.exp()))
    cached = list((releases / "zs-cache").glob("clip-zeroshot-*.safetensors"))
    assert len(cached) == 1
    again = pv.ClipZeroShot("again", v.clip, CLASSES, TEMPLATES, [], releases / "zs-cache")
    assert torch.equal(again.weights, v.weights)


def test_self_supervised_cosines(engine):
    px = _pixels(seed=5)
    for name in ("dino-ssl", "clip-ssl"):
        v = engine.verifiers[name]
        same = v.score(PixelModel(), px, None, px)
        torch.testing.assert_close(same, torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
        other = v.score(PixelModel(), px, None, px.flip(0))
        assert other.shape == (3,) and bool((other < 0.99999).any())


def test_shipped_imagenet_data_for_the_zero_shot_classifier():
    import hashlib
    names = pv.read_lines(pv.DATA_DIR / "imagenet" / "classnames.txt")
    templates = pv.read_lines(pv.DATA_DIR / "imagenet" / "clip_templates.txt")
    # CLIP's notebook (openai/CLIP notebooks/Prompt_Engineering_for_ImageNet.ipynb at d05afc4, `imagenet_classes` and
    # `imagenet_templates`): SHA-256 of its lists joined by newlines. It names 657 and 744 both "missile" and 836 and
    # 837 both "sunglasses" (an older open_clip had "sunglass" and "sunglasses / dark glasses / shades").
    assert hashlib.sha256("\n".join(names).encode()).hexdigest() == (
        "571ae1c583b4be7da87519494c52bf405a46af05d5815627c7a0dee997068b60")
    assert hashlib.sha256("\n".join(templates).encode()).hexdigest() == (
        "4f976686fb651bb5803d4689dcd849f75efe0ef19a3c801355bc9a6f03c8a5af")
    assert len(names) == 1000 and len(set(names)) == 998
    assert names[657] == names[744] == "missile" and names[836] == names[837] == "sunglasses"
    assert names[0] == "tench" and names[207] == "Golden Retriever" and names[999] == "toilet paper"
    assert len(templates) == 80 and all(t.count("{}") == 1 for t in templates)
    assert templates[0] == "a bad photo of a {}." and templates[-1] == "a tattoo of the {}."


def test_shipped_drawbench_has_200_prompts_in_11_categories():
    import csv
    rows = list(csv.DictReader(open(pv.DATA_DIR / "drawbench" / "drawbench.csv", encoding="utf-8")))
    assert len(rows) == 200 and len({r["Prompts"] for r in rows}) == 200
    from collections import Counter
    assert Counter(r["Category"] for r in rows) == {
        "Colors": 25, "Conflicting": 10, "Counting": 19, "DALL-E": 20, "Descriptions": 20, "Gary Marcus et al.": 10,
        "Misspellings": 10, "Positional": 20, "Rare Words": 7, "Reddit": 38, "Text": 21}
    assert rows[0] == {"Prompts": "A red colored car.", "Category": "Colors"}
    assert rows[-1]["Prompts"].startswith("New York Skyline with 'Google Research Pizza Cafe'")


# ---------- through the engine ----------

def test_sit_path_end_to_end_sd_vae_decode_to_scores(engine):
    m = engine.models["sit-tiny"]
    assert m.vae is not None and m.sample_shape == (4, 8, 8)
    h = [t.handle for t in engine.initial_noises(pb.InitialNoisesRequest(model="sit-tiny", seeds=[1, 2, 3])).tensors]
    r = engine.denoise(pb.DenoiseRequest(model="sit-tiny", handles=h, conditions=[pb.Condition(class_label=2)],
                                         sigma_from=1.0, sigma_to=0.0, capture_sigmas=[0.4]))
    assert r.nfes_per_sample == 7  # Heun, 4 steps, CFG 1.0
    out, xp = [t.handle for t in r.tensors], [t.handle for t in r.captures[0].tensors]
    names = ["dino-linearhead", "clip-zeroshot", "dino-ssl", "clip-ssl"]
    s = engine.score(pb.ScoreRequest(model="sit-tiny", handles=out, verifiers=names, conditions=[pb.Condition(class_label=2)],
                                     x_prediction_handles=xp))
    assert [x.verifier for x in s.results] == names and all(len(x.scores) == 3 for x in s.results)
    assert s.verifier_calls == 12
    assert m.to_pixels(torch.zeros(1, *m.sample_shape)).shape == (1, 3, 16, 16)
    rev = engine.score(pb.ScoreRequest(model="sit-tiny", handles=out[::-1], verifiers=names,
                                       conditions=[pb.Condition(class_label=2)], x_prediction_handles=xp[::-1]))
    for a, b in zip(s.results, rev.results):
        np.testing.assert_allclose(list(a.scores), list(b.scores)[::-1], atol=1e-6)
    with pytest.raises(BadRequest) as e:
        engine.score(pb.ScoreRequest(model="sit-tiny", handles=out, verifiers=["clip-zeroshot"]))
    assert e.value.field == "conditions" and "class label" in str(e.value)
    with pytest.raises(BadRequest) as e:
        engine.score(pb.ScoreRequest(model="sit-tiny", handles=out, verifiers=["dino-linearhead"],
                                     conditions=[pb.Condition(prompt="a cat")]))
    assert e.value.field == "conditions[0].class_label"
    with pytest.raises(BadRequest) as e:
        engine.score(pb.ScoreRequest(model="sit-tiny", handles=out, verifiers=["clipscore"]))
    assert e.value.field == "verifiers[0]"  # a text verifier does not score ImageNet samples


def test_flux_path_end_to_end_with_the_text_to_image_verifiers(engine):
    h = [t.handle for t in engine.initial_noises(pb.InitialNoisesRequest(model="flux-tiny", seeds=[1, 2])).tensors]
    r = engine.denoise(pb.DenoiseRequest(model="flux-tiny", handles=h, conditions=[pb.Condition(prompt="a red car")],
                                         solver=pb.SolverSettings(steps=3), sigma_from=1.0, sigma_to=0.0))
    assert r.nfes_per_sample == 3
    out = [t.handle for t in r.tensors]
    names = ["aesthetic", "clipscore", "imagereward"]
    s = engine.score(pb.ScoreRequest(model="flux-tiny", handles=out, verifiers=names,
                                     conditions=[pb.Condition(prompt="a red car")]))
    assert [x.verifier for x in s.results] == names
    assert all(len(x.scores) == 2 and all(math.isfinite(v) for v in x.scores) for x in s.results)
    assert all(0.0 <= v <= 2.5 for v in s.results[1].scores)
    with pytest.raises(BadRequest) as e:
        engine.score(pb.ScoreRequest(model="flux-tiny", handles=out, verifiers=["aesthetic", "imagereward"]))
    assert e.value.field == "conditions" and "['imagereward'] need the prompt" in str(e.value)
    with pytest.raises(BadRequest) as e:
        engine.score(pb.ScoreRequest(model="flux-tiny", handles=out, verifiers=["clipscore"],
                                     conditions=[pb.Condition(prompt="a"), pb.Condition(unconditional=True)]))
    assert e.value.field == "conditions[1].prompt"
    # the aesthetic score needs nothing
    a = engine.score(pb.ScoreRequest(model="flux-tiny", handles=out, verifiers=["aesthetic"]))
    assert list(a.results[0].scores) == list(s.results[0].scores)


def test_missing_verifier_files_name_their_config_key(releases):
    spec = dict(verifier_specs(releases)[2], checkpoint=str(releases / "nowhere.pt"))
    with pytest.raises(FileNotFoundError, match=r"verifiers\[0\]\.checkpoint: .*nowhere.pt does not exist"):
        pv.load_paper_verifiers([spec], releases, CPU, torch.float32, 2, {})
    with pytest.raises(ValueError, match=r"verifiers\[0\]\.head: required"):
        pv.load_paper_verifiers([{"name": "a", "kind": "aesthetic", "clip": str(releases / "clip")}], releases, CPU,
                                torch.float32, 2, {})
    with pytest.raises(ValueError, match=r"verifiers\[0\]\.kind"):
        pv.load_paper_verifiers([{"name": "x", "kind": "pickscore"}], releases, CPU, torch.float32, 2, {})


# ---------- packed through the compute loop ----------

SCORED = ["aesthetic", "clipscore", "imagereward", "dino-linearhead", "dino-linear4head", "clip-zeroshot", "dino-ssl",
          "clip-ssl"]
PROMPTS = ["a cat", "a red car", "a photo of a dog", "a dog"]


def _score_all(engine, px, seed):
    """Every paper verifier's scores of `px` (pixels), with prompts, labels and x-predictions drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    n = px.shape[0]
    prompts = [PROMPTS[int(i)] for i in torch.randint(0, len(PROMPTS), (n,), generator=g)]
    labels = torch.randint(0, 5, (n,), generator=g)
    xp = _pixels(n, seed + 1000)
    return {name: engine.verifiers[name].score(PixelModel(), px, labels, xp, prompts=prompts) for name in SCORED}


def _wait_for(cond, what, timeout=60.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_served_verifiers_give_the_bits_of_the_direct_path(engine):
    """Through the loop (Compute.run_net) = the networks called directly in fixed micro-batches (run_fixed_batches),
    the path these verifiers took before they were packed."""
    px = _pixels(6, seed=20)
    served = _score_all(engine, px, 20)
    for name in SCORED:
        v = engine.verifiers[name]
        assert v.runner == engine.compute.run_net
        direct = copy.copy(v)
        direct.runner = None  # models.run_here: run_fixed_batches in the calling thread
        g = torch.Generator().manual_seed(20)
        prompts = [PROMPTS[int(i)] for i in torch.randint(0, len(PROMPTS), (6,), generator=g)]
        labels = torch.randint(0, 5, (6,), generator=g)
        assert torch.equal(served[name], direct.score(PixelModel(), px, labels, _pixels(6, 1020), prompts=prompts)), name
    ir = engine.verifiers["imagereward"]
    assert engine.compute.scheduler_of(ir.reward_rows).forwards >= 2  # 6 rows at micro-batch 4
    clip = engine.verifiers["clipscore"].clip
    assert engine.compute.scheduler_of(clip.image_rows).micro_batch == 4
    # ImageReward by hand at the old fixed micro-batch of 4
    images = ir.preprocess(pv.to_images(px))
    tok = ir.tokenizer(["a cat"] * 6, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    with torch.inference_mode():
        raw = run_fixed_batches(ir.reward_rows, 4, images, tok.input_ids, tok.attention_mask).squeeze(1)
    want = ((raw - pv.IMAGEREWARD_MEAN) / pv.IMAGEREWARD_STD).double()
    assert torch.equal(ir.score(PixelModel(), px, None, None, prompts=["a cat"] * 6), want)


def test_clipscore_of_one_new_prompt_keeps_its_bits(engine):
    """A request's one new prompt was encoded as a batch of 1; at text_micro_batch 1 it still is."""
    v = engine.verifiers["clipscore"]
    px, prompt = _pixels(3, seed=21), "a never seen red cat"
    got = v.score(PixelModel(), px, None, None, prompts=[prompt] * 3)
    with torch.inference_mode():
        ids = v.clip.tokenizer([v.prefix + prompt], padding="max_length", max_length=77, truncation=True,
                               return_tensors="pt").input_ids
        txt = F.normalize(v.clip.text_rows(ids), dim=-1)
        img = F.normalize(run_fixed_batches(v.clip.image_rows, 4, v.clip.preprocess(pv.to_images(px))), dim=-1)
    assert torch.equal(got, (2.5 * (img * txt).sum(-1).clamp(min=0)).double())
    assert engine.compute.scheduler_of(v.clip.text_rows).forwards >= 1


def test_a_verifier_call_alone_and_beside_concurrent_calls_gives_the_same_scores(engine):
    px = _pixels(5, seed=22)
    alone = _score_all(engine, px, 22)
    stop, errors, rounds = threading.Event(), [], [0, 0, 0]

    def load(i):
        k = 0
        while not stop.is_set():
            rounds[i] = k
            try:
                _score_all(engine, _pixels(1 + (i + k) % 4, 100 * i + k), 100 * i + k)
                if i == 0:  # FLUX's rows (and a new prompt's text rows) in the same loop
                    h = [t.handle for t in engine.initial_noises(pb.InitialNoisesRequest(model="flux-tiny", seeds=[k])).tensors]
                    engine.denoise(pb.DenoiseRequest(model="flux-tiny", handles=h, solver=pb.SolverSettings(steps=2),
                                                     conditions=[pb.Condition(prompt=f"load prompt {k}")],
                                                     sigma_from=1.0, sigma_to=0.0))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)
                return
            k += 1
    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: min(rounds) >= 1 or errors, "every load thread in its loop")
        loaded = [_score_all(engine, px, 22) for _ in range(2)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    for run in loaded:
        for name in SCORED:
            assert torch.equal(run[name], alone[name]), name


def test_rows_of_concurrent_calls_with_different_prompts_share_a_micro_batch(engine):
    ir = engine.verifiers["imagereward"]
    pxs = [_pixels(1, seed=30 + i) for i in range(4)]
    alone = [ir.score(PixelModel(), px, None, None, prompts=[p]) for px, p in zip(pxs, PROMPTS)]
    s = engine.compute.scheduler_of(ir.reward_rows)
    before, out = s.forwards, [None] * 4
    with DEVICE_LOCK:  # the loop cannot run a forward: the four calls' rows queue up
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(
            i, ir.score(PixelModel(), pxs[i], None, None, prompts=[PROMPTS[i]]))) for i in range(4)]
        for t in threads:
            t.start()
        _wait_for(lambda: len(s.queue) == 4, "four calls' rows in the queue")
    for t in threads:
        t.join()
    assert s.forwards - before <= 2  # the rows of up to four calls in one micro-batch of 4 (alone: 4 forwards)
    for a, b in zip(alone, out):
        assert torch.equal(a, b)


def test_a_cancelled_verifier_call_leaves_the_queue_at_once(engine):
    ir = engine.verifiers["imagereward"]
    px = _pixels(9, seed=40)
    ir.score(PixelModel(), px[:1], None, None, prompts=["a cat"])  # its scheduler exists from its first forward
    s = engine.compute.scheduler_of(ir.reward_rows)
    alive, raised = [True], []

    def call():
        CALL.is_active = lambda: alive[0]
        try:
            ir.score(PixelModel(), px, None, None, prompts=["a cat"] * 9)
        except Cancelled as e:
            raised.append(e)
    with DEVICE_LOCK:  # the first micro-batch is taken and waits for the device; 5 rows stay queued
        t = threading.Thread(target=call)
        t.start()
        _wait_for(lambda: any(w.next_row == 4 for w in s.queue), "the first micro-batch taken")
        with engine.compute.loop.cv:
            assert s.queued_rows_locked() == 5
        alive[0] = False
        t.join(timeout=30)
        assert not t.is_alive() and raised  # while the device is still busy: it did not wait for its rows
        with engine.compute.loop.cv:
            assert s.queued_rows_locked() == 0 and not s.queue
    again = ir.score(PixelModel(), px[:2], None, None, prompts=["a cat"] * 2)  # the loop lives on
    assert torch.equal(again, ir.score(PixelModel(), px, None, None, prompts=["a cat"] * 9)[:2])


def test_flux_text_towers_run_in_the_loop_with_the_bits_of_the_direct_path(engine):
    m = engine.models["flux-tiny"]
    assert m.text.runner == engine.compute.run_net and m.text.micro_batch == 1
    states, pooled = m.text.encode(["a prompt only this test encodes"])
    direct = FluxTextEncoder(m.text.clip_tokenizer, m.text.clip_model, m.text.t5_tokenizer, m.text.t5_model, CPU,
                             torch.float32, PromptCache(), owner="direct")
    ref_states, ref_pooled = direct.encode(["a prompt only this test encodes"])
    assert torch.equal(states, ref_states) and torch.equal(pooled, ref_pooled)
    assert engine.compute.scheduler_of(m.text.t5_rows).forwards >= 1


def test_new_prompts_of_concurrent_calls_share_the_text_towers_micro_batches(engine):
    """At text_micro_batch 4 the prompt cache lets four calls' new prompts reach the CLIP tower together."""
    m = engine.models["flux-tiny"]
    compute = Compute({}, {})

    def encoder(runner):
        e = FluxTextEncoder(m.text.clip_tokenizer, m.text.clip_model, m.text.t5_tokenizer, m.text.t5_model, CPU,
                            torch.float32, PromptCache(), owner="packed", micro_batch=4)
        e.runner = runner
        return e
    prompts = [f"packed prompt {i}" for i in range(4)]
    alone = [encoder(None).encode([p]) for p in prompts]
    enc, out = encoder(compute.run_net), [None] * 4
    enc.encode(["warm up"])
    s = compute.scheduler_of(enc.clip_rows)
    before = s.forwards
    with DEVICE_LOCK:
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, enc.encode([prompts[i]]))) for i in range(4)]
        for t in threads:
            t.start()
        _wait_for(lambda: len(s.queue) == 4, "four calls' prompts in the CLIP tower's queue")
    for t in threads:
        t.join()
    assert s.forwards - before <= 2 and enc.cache.prompts_encoded == 5
    for (a_s, a_p), (b_s, b_p) in zip(alone, out):
        assert torch.equal(a_s, b_s) and torch.equal(a_p, b_p)

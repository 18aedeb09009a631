"""`inspect` covers every model and verifier the worker knows, built on the meta device (no weights allocated).

Expected full-size parameter counts, and where each comes from. Every count is the state dict built here on the
meta device from the release's own config.json (written out in inspect_model.py), tied tensors counted once; the
ones marked "published" were cross-checked against an independent public figure:
- flux-dev 11,901,408,320 and flux-ae 83,819,683: the issue's figures (BFL's flux1-dev.safetensors / ae.safetensors).
- clip-vit-large-patch14 427,616,513: published (the count OpenAI CLIP ViT-L/14 reports with
  sum(p.numel() for p in model.parameters()), quoted in many public repositories).
- flux-text-encoder-2 (T5 v1.1 XXL encoder) 4,762,310,656: published (T5 v1.1 XXL encoder size in public tables,
  e.g. the CogVideoX / SD3 component counts); flux-text-encoder (CLIP-L text) 123,060,480: published beside FLUX's
  11.89 B denoiser in a public FLUX anatomy table.
- sit-xl-2 675,129,632: the official checkpoint's key list (tests/data/sit-xl-2.keys.json), the paper's "675M".
- dinov2-{small,base,large,giant}: built here from facebook/dinov2-* configs (patch 14, 518 px, layer scale;
  giant with SwiGLU); the DINOv2 paper's rounded sizes are 21 M / 86 M / 300 M / 1.1 B.
- sd-vae 83,653,863: built here from stabilityai/sd-vae-ft-ema's config.json.
- imagereward 446,665,953: built here (BLIP ViT-L/16 + BERT-base with 1024-wide cross-attention + the MLP head +
  BLIP's two 256-d projections, the keys of ImageReward.pt).
- aesthetic-mlp 927,969 and the DINOv2 linear heads: arithmetic (Linear layers), asserted as such below.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from noisesearch_worker.classifiers import CLASSIFIERS
from noisesearch_worker.inspect_model import inspect, names
from noisesearch_worker.paper_verifiers import KINDS
from noisesearch_worker.sit import SIT_CONFIGS

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "flux-dev": 11_901_408_320,
    "flux-ae": 83_819_683,
    "flux-text-encoder": 123_060_480,
    "flux-text-encoder-2": 4_762_310_656,
    "sit-xl-2": 675_129_632,
    "sd-vae": 83_653_863,
    "clip-vit-large-patch14": 427_616_513,
    "aesthetic-mlp": 927_969,
    "imagereward": 446_665_953,
    "dinov2-small": 22_056_576,
    "dinov2-base": 86_580_480,
    "dinov2-large": 304_368_640,
    "dinov2-giant": 1_136_480_768,
    "verifier-cnn": 590_698,
    "evaluator-resnet": 174_859,
}


@pytest.mark.parametrize("name,count", sorted(EXPECTED.items()))
def test_full_size_parameter_counts(name, count):
    assert inspect(name)["num_parameters"] == count


def test_every_model_and_verifier_the_worker_knows_is_listed():
    known = set(names())
    assert set(SIT_CONFIGS) | set(CLASSIFIERS) | {"flux-dev", "flux-ae"} <= known
    assert set(KINDS) <= known  # every paper verifier kind
    assert {"classifier-logit", "feature-cosine", "evaluator-logprob"} <= known  # the default bundle's verifiers
    for size in ("small", "base", "large", "giant"):
        assert {f"dinov2-{size}", f"dinov2-{size}-with-registers", f"dinov2-{size}-linear-head",
                f"dinov2-{size}-linear4-head"} <= known


def test_verifiers_are_their_towers_plus_heads():
    clip, mlp = EXPECTED["clip-vit-large-patch14"], EXPECTED["aesthetic-mlp"]
    assert mlp == (768 * 1024 + 1024) + (1024 * 128 + 128) + (128 * 64 + 64) + (64 * 16 + 16) + (16 + 1)
    doc = inspect("aesthetic")
    assert doc["num_parameters"] == clip + mlp
    assert doc["state_dict"]["head.0.weight"] == [1024, 768]
    assert doc["state_dict"]["clip.visual_projection.weight"] == [768, 1024]
    for kind in ("clipscore", "clip-zeroshot", "clip-ssl"):
        assert inspect(kind)["num_parameters"] == clip
    head = 2 * 1024 * 1000 + 1000  # [cls, mean patch] of DINOv2-L -> 1000 classes
    assert inspect("dinov2-large-linear-head")["num_parameters"] == head
    assert inspect("dinov2-large-linear4-head")["num_parameters"] == 5 * 1024 * 1000 + 1000
    assert inspect("dino-linearhead")["num_parameters"] == EXPECTED["dinov2-large"] + head
    assert inspect("dino-ssl")["num_parameters"] == EXPECTED["dinov2-large"]
    assert inspect("dinov2-large-with-registers")["num_parameters"] == EXPECTED["dinov2-large"] + 4 * 1024
    assert inspect("classifier-logit")["num_parameters"] == EXPECTED["verifier-cnn"]
    assert inspect("evaluator-logprob")["num_parameters"] == EXPECTED["evaluator-resnet"]


def test_shapes_follow_the_release_layouts():
    ir = inspect("imagereward")["state_dict"]
    assert ir["visual_encoder.embeddings.patch_embedding.weight"] == [1024, 3, 16, 16]  # BLIP ViT-L/16
    assert ir["visual_encoder.embeddings.position_embedding"] == [1, 197, 1024]
    assert ir["text_encoder.encoder.layer.0.crossattention.self.key.weight"] == [768, 1024]
    assert ir["text_encoder.embeddings.word_embeddings.weight"] == [30524, 768]
    assert ir["mlp.0.weight"] == [1024, 768] and ir["mlp.7.weight"] == [1, 16]
    t5 = inspect("flux-text-encoder-2")
    assert t5["state_dict"]["shared.weight"] == t5["state_dict"]["encoder.embed_tokens.weight"] == [32128, 4096]
    dino = inspect("dinov2-giant")["state_dict"]
    assert dino["embeddings.position_embeddings"] == [1, 1 + 37 * 37, 1536]


def test_inspect_allocates_no_weights():
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doc = inspect("flux-text-encoder-2")  # 4.8 B parameters: 19 GB in fp32 if they were allocated
    assert doc["num_parameters"] > 4e9
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1_000_000  # KiB: well under 1 GB


def test_the_command_lists_and_reports(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "noisesearch_worker", "inspect", "--list"], capture_output=True,
                         text=True, check=True, cwd=ROOT, env=env)
    listed = json.loads(out.stdout)
    assert "imagereward" in listed and "ImageReward" in listed["imagereward"]
    out = subprocess.run([sys.executable, "-m", "noisesearch_worker", "inspect", "aesthetic-mlp"], capture_output=True,
                         text=True, check=True, cwd=ROOT, env=env)
    doc = json.loads(out.stdout)
    assert doc["num_parameters"] == EXPECTED["aesthetic-mlp"] and doc["model"] == "aesthetic-mlp"

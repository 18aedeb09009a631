"""SiT layouts against the official checkpoints, strict loading, and the shipped default bundle's quality."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from noisesearch_worker.data import load_split, DATA_DIR
from noisesearch_worker.inspect_model import inspect
from noisesearch_worker.models import load_sit_model
from noisesearch_worker.sit import SIT_CONFIGS, SiT, guided_velocity
from tiny_models import TINY_SIT as TINY, random_sit

ROOT = Path(__file__).resolve().parents[1]


def test_sit_xl_2_matches_the_official_checkpoint_layout_key_for_key():
    expected = json.loads((ROOT / "tests/data/sit-xl-2.keys.json").read_text())
    got = inspect("sit-xl-2")
    assert list(got["state_dict"].items()) == list(expected["state_dict"].items())
    assert got["num_parameters"] == expected["num_parameters"] == 675_129_632


def test_inspect_command_prints_json_without_weights():
    out = subprocess.run([sys.executable, "-m", "noisesearch_worker", "inspect", "sit-fmnist"], capture_output=True,
                         text=True, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    doc = json.loads(out.stdout)
    assert doc["state_dict"]["x_embedder.proj.weight"] == [128, 1, 4, 4]
    assert doc["num_parameters"] == sum(torch.Size(s).numel() for s in doc["state_dict"].values())
    bad = subprocess.run([sys.executable, "-m", "noisesearch_worker", "inspect", "nope"], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "unknown model 'nope'" in bad.stderr


@pytest.mark.parametrize("name", ["sit-l-2", "sit-b-2"])
def test_other_imagenet_configs_build_on_meta(name):
    doc = inspect(name)
    hidden = SIT_CONFIGS[name].hidden_size
    assert doc["state_dict"]["pos_embed"] == [1, 256, hidden]
    assert doc["state_dict"]["final_layer.linear.weight"] == [32, hidden]


@pytest.mark.parametrize("layout", ["bare", "ema", "model"])
def test_strict_round_trip_through_an_official_style_torch_file(tmp_path, monkeypatch, layout):
    monkeypatch.setitem(SIT_CONFIGS, "tiny", TINY)
    net = SiT(TINY)
    net.initialize_weights()
    torch.nn.init.normal_(net.final_layer.linear.weight)  # not all zeros, so the output is informative
    state = net.state_dict()
    payload = {"bare": state, "ema": {"model": {}, "ema": state, "opt": {}}, "model": {"model": state}}[layout]
    torch.save(payload, tmp_path / "tiny.pt")
    loaded = load_sit_model({"name": "tiny", "config": "tiny", "checkpoint": "tiny.pt"}, tmp_path,
                            torch.device("cpu"), torch.float32, 4)
    x, t, y = torch.randn(3, 4, 8, 8), torch.rand(3), torch.tensor([0, 1, 5])
    with torch.no_grad():
        assert torch.equal(loaded.net(x, t, y), net.eval()(x, t, y))


def test_loading_refuses_a_checkpoint_with_a_missing_or_renamed_key(tmp_path, monkeypatch):
    monkeypatch.setitem(SIT_CONFIGS, "tiny", TINY)
    state = SiT(TINY).state_dict()
    state["final_layer.linear.weight_renamed"] = state.pop("final_layer.linear.weight")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(RuntimeError, match="final_layer.linear.weight"):
        load_sit_model({"name": "tiny", "config": "tiny", "checkpoint": "bad.safetensors"}, tmp_path,
                       torch.device("cpu"), torch.float32, 4)


def test_missing_checkpoint_is_a_clear_start_up_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"models\[sit-xl-2\].checkpoint"):
        load_sit_model({"name": "sit-xl-2", "checkpoint": "SiT-XL-2-256x256.pt"}, tmp_path, torch.device("cpu"),
                       torch.float32, 4)


def test_worker_start_fails_clearly_on_a_missing_checkpoint(tmp_path):
    cfg = tmp_path / "w.json"
    cfg.write_text(json.dumps({"models": [{"name": "sit-xl-2", "checkpoint": "/nowhere/SiT-XL-2-256x256.pt"}],
                               "verifier_bundles": []}))
    out = subprocess.run([sys.executable, "-m", "noisesearch_worker", "serve", "--config", str(cfg), "--address",
                          "127.0.0.1:0"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "/nowhere/SiT-XL-2-256x256.pt does not exist" in out.stderr


# ---------- classifier-free guidance against SiT's forward_with_cfg ----------

def reference_forward_with_cfg(net, x, t, y, cfg_scale):
    """A copy of the official formula: willisma/SiT models.py `SiT.forward_with_cfg` (lines 249-265 at 947f95b),
    with `self.forward` as `net`. The batch is [x, x] with labels [y, null], as the official sample.py builds it."""
    half = x[: len(x) // 2]
    combined = torch.cat([half, half], dim=0)
    model_out = net(combined, t, y)
    eps, rest = model_out[:, :3], model_out[:, 3:]
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
    half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
    eps = torch.cat([half_eps, half_eps], dim=0)
    return torch.cat([eps, rest], dim=1)


@pytest.fixture()
def tiny_latent_sit(tmp_path, monkeypatch):
    monkeypatch.setitem(SIT_CONFIGS, "tiny", TINY)
    torch.save({"ema": random_sit(TINY).state_dict()}, tmp_path / "tiny.pt")
    return load_sit_model({"name": "tiny", "config": "tiny", "checkpoint": "tiny.pt"}, tmp_path, torch.device("cpu"),
                          torch.float32, 3)


def test_guidance_matches_the_official_forward_with_cfg_and_all_differs_on_channel_3(tiny_latent_sit):
    model = tiny_latent_sit
    assert model.sit.guidance_channels == "official"  # the default
    x, labels, sigma, scale = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2, 4]), 0.7, 4.0
    t = torch.full((3,), 1.0 - sigma)
    with torch.no_grad():
        ref = -reference_forward_with_cfg(model.sit, torch.cat([x, x]), torch.cat([t, t]),
                                          torch.cat([labels, torch.full_like(labels, 5)]), scale)[:3]
    official = model.velocity_fn(labels, scale)(x, sigma)
    # The scheduler's rows are (conditional, null) pairs in micro-batches of 3, the reference one batch of 6:
    # the same formula, equal up to the GEMM's row-count rounding.
    torch.testing.assert_close(official, ref, atol=1e-6, rtol=1e-5)
    model.sit.set_guidance_channels("all")
    everything = model.velocity_fn(labels, scale)(x, sigma)
    torch.testing.assert_close(everything[:, :3], ref[:, :3], atol=1e-6, rtol=1e-5)
    assert (everything[:, 3] - ref[:, 3]).abs().max() > 1e-2  # channel 3: guided here, conditional in the release
    with torch.no_grad():
        cond = -model.sit(x, t, labels)
    torch.testing.assert_close(official[:, 3], cond[:, 3], atol=1e-5, rtol=1e-5)


def test_guided_velocity_is_the_plain_formula_for_models_of_at_most_three_channels():
    g = torch.Generator().manual_seed(1)
    for c in (1, 3):  # sit-fmnist has 1 channel: "official" is bit-identical to guiding everything
        vc, vu = torch.randn(2, c, 4, 4, generator=g), torch.randn(2, c, 4, 4, generator=g)
        plain = vu + 1.5 * (vc - vu)
        assert torch.equal(guided_velocity(vc, vu, 1.5, 3), plain)
        assert torch.equal(guided_velocity(vc, vu, 1.5, None), plain)
    assert SiT(SIT_CONFIGS["sit-fmnist"]).guidance_channels == "official"


def test_guidance_channels_is_a_model_config_key_refused_when_unknown(tmp_path, monkeypatch):
    from noisesearch_worker.config import WorkerConfig, build_engine
    monkeypatch.setitem(SIT_CONFIGS, "tiny", TINY)
    torch.save(random_sit(TINY).state_dict(), tmp_path / "tiny.pt")

    def engine_with(**extra):
        spec = {"name": "tiny", "config": "tiny", "checkpoint": "tiny.pt", **extra}
        return build_engine(WorkerConfig(device="cpu", models=[spec], verifier_bundles=[], checkpoints_dir=str(tmp_path)))
    assert engine_with().models["tiny"].sit.guided_channels == 3
    assert engine_with(guidance_channels="all").models["tiny"].sit.guided_channels is None
    with pytest.raises(ValueError, match=r"models\[tiny\]\.guidance_channels: unknown mode 'some'"):
        engine_with(guidance_channels="some")


needs_data = pytest.mark.skipif(not DATA_DIR.exists(), reason="Debian dataset-fashion-mnist is not installed "
                                "(scripts/setup.sh installs it)")


@needs_data
@pytest.mark.parametrize("name", ["verifier-cnn", "evaluator-resnet"])
def test_shipped_classifiers_reach_90_percent_on_the_test_split(engine, name):
    x, y = load_split("test")
    verifier = {"verifier-cnn": "classifier-logit", "evaluator-resnet": "evaluator-logprob"}[name]
    net = engine.verifiers[verifier].net
    dev = next(net.parameters()).device
    with torch.no_grad():
        acc = sum((net(x[i:i + 1000].to(dev)).argmax(1).cpu() == y[i:i + 1000]).sum().item()
                  for i in range(0, 10_000, 1000)) / 10_000
    assert acc >= 0.90, acc


def test_default_sampler_samples_are_recognised_by_the_held_out_evaluator(engine):
    """10 samples per class at the default sampler: the evaluator must name the conditioning class >= 80%."""
    from noisesearch_worker.sampling import SAMPLERS, initial_noises, linear_sigmas
    model = engine.models["sit-fmnist"]
    labels = torch.arange(10).repeat_interleave(10)
    noise = initial_noises(list(range(9000, 9100)), model.sample_shape)
    x = SAMPLERS[model.defaults.solver](model.velocity_fn(labels, model.defaults.guidance_scale), noise,
                                       linear_sigmas(1.0, 0.0, model.defaults.steps))
    with torch.no_grad():
        net = engine.verifiers["evaluator-logprob"].net
        pred = net(x.to(next(net.parameters()).device)).argmax(1).cpu()
    assert (pred == labels).float().mean().item() >= 0.80

"""FLUX.1-dev in the worker: the schedule, packing, the BFL layouts at full size (meta), tiny random releases
loaded offline from the diffusers folder layout and from BFL single files, our loop against FluxPipeline, NFEs."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch_worker import flux
from noisesearch_worker.engine import BadRequest, Engine, Limits
from noisesearch_worker.sampling import initial_noises, sample_euler
from noisesearch_worker.store import TensorStore
from tiny_models import TINY_AE, TINY_FLUX, flux_parts, flux_spec, save_flux_release

DATA = Path(__file__).resolve().parent / "data"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    parts = flux_parts(seed=0)
    root = save_flux_release(tmp_path_factory.mktemp("FLUX.1-tiny"), parts)
    return root, parts


@pytest.fixture()
def tiny_registry(monkeypatch):
    monkeypatch.setitem(flux.FLUX_CONFIGS, "flux-tiny", TINY_FLUX)
    monkeypatch.setitem(flux.FLUX_AE_CONFIGS, "flux-tiny-ae", TINY_AE)


def load(root, **kw):
    return flux.load_flux_model(flux_spec(root, **kw), root, CPU, torch.float32, 4)


# ---------- schedule ----------

def test_mu_and_time_shift_against_hand_computed_values():
    assert flux.calculate_mu(256) == pytest.approx(0.5)
    assert flux.calculate_mu(4096) == pytest.approx(1.15)
    assert flux.calculate_mu(1024) == pytest.approx(0.5 + 0.65 * 768 / 3840)  # 0.63
    # 1024^2 -> 128^2 latent -> 64^2 = 4096 packed tokens -> mu = 1.15; e^1.15 = 3.158192909689768
    e = 3.158192909689768
    assert flux.time_shift(1.15, 0.5) == pytest.approx(e / (e + 1.0), abs=1e-12)          # 0.759510...
    assert flux.time_shift(1.15, 0.25) == pytest.approx(e / (e + 3.0), abs=1e-12)         # 0.512842...
    assert flux.time_shift(1.15, 0.5) == pytest.approx(0.7595109169, abs=1e-9)
    assert flux.time_shift(1.15, 0.0) == 0.0 and flux.time_shift(1.15, 1.0) == 1.0
    for s in (0.01, 0.4, 0.93):
        assert flux.time_shift(1.15, flux.inverse_time_shift(1.15, s)) == pytest.approx(s, abs=1e-12)


def test_full_grid_is_fluxpipelines_schedule():
    from diffusers import FlowMatchEulerDiscreteScheduler
    for steps, tokens in ((30, 4096), (4, 16), (50, 1024)):
        mu = flux.calculate_mu(tokens)
        sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        ours = flux.shifted_sigmas(1.0, 0.0, steps, mu)
        assert len(ours) == steps + 1 and ours[0] == 1.0 and ours[-1] == 0.0
        np.testing.assert_allclose(ours, sched.sigmas.double().numpy(), atol=1e-6)


def test_a_partial_range_reuses_the_same_warped_clock():
    mu = 1.15
    full = flux.shifted_sigmas(1.0, 0.0, 30, mu)
    part = flux.shifted_sigmas(full[10], full[20], 10, mu)
    np.testing.assert_allclose(part, full[10:21], atol=1e-12)
    assert part[0] == full[10] and part[-1] == full[20]  # the ends are exact, not recomputed
    assert all(a > b for a, b in zip(part, part[1:]))


# ---------- packing ----------

def test_packing_round_trip_and_the_pipelines_layout():
    from diffusers import FluxPipeline
    x = torch.randn(3, 16, 8, 6)
    tokens = flux.pack_latents(x)
    assert tokens.shape == (3, 12, 64)
    assert torch.equal(tokens, FluxPipeline._pack_latents(x, 3, 16, 8, 6))
    assert torch.equal(flux.unpack_latents(tokens, 8, 6), x)
    assert torch.equal(flux.unpack_latents(tokens, 8, 6), FluxPipeline._unpack_latents(tokens, 8 * 8, 6 * 8, 8))
    # token (r, c) holds the 2x2 patch at rows 2r..2r+1, cols 2c..2c+1, channel-major
    assert torch.equal(tokens[0, 1 * 3 + 2].view(16, 2, 2), x[0, :, 2:4, 4:6])
    assert torch.equal(flux.latent_image_ids(8, 6), FluxPipeline._prepare_latent_image_ids(1, 4, 3, CPU, torch.float32))
    with pytest.raises(ValueError, match="even"):
        flux.pack_latents(torch.zeros(1, 16, 7, 6))


# ---------- full size on the meta device ----------

def _meta_checkpoint(doc: dict) -> dict:
    return {k: torch.empty(shape, device="meta") for k, shape in doc["state_dict"].items()}


def test_full_size_flux_dev_single_file_converts_to_exactly_the_diffusers_model():
    doc = json.loads((DATA / "flux-dev.keys.json").read_text())
    assert len(doc["state_dict"]) == 780
    converted = flux.convert_bfl_transformer(_meta_checkpoint(doc))
    model = flux.build_transformer(flux.FLUX_CONFIGS["flux-dev"], "meta").state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in model.items()}
    n = sum(v.numel() for v in model.values())
    assert n == doc["num_parameters"] == 11_901_408_320


def test_full_size_flux_ae_single_file_converts_to_exactly_the_diffusers_model():
    doc = json.loads((DATA / "flux-ae.keys.json").read_text())
    assert len(doc["state_dict"]) == 244
    converted = flux.convert_bfl_autoencoder(_meta_checkpoint(doc), flux.FLUX_AE_CONFIGS["flux-ae"])
    model = flux.build_autoencoder(flux.FLUX_AE_CONFIGS["flux-ae"], "meta").state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in model.items()}
    assert sum(v.numel() for v in model.values()) == doc["num_parameters"] == 83_819_683
    assert flux.FLUX_AE_CONFIGS["flux-ae"]["scaling_factor"] == doc["scale_factor"] == 0.3611
    assert flux.FLUX_AE_CONFIGS["flux-ae"]["shift_factor"] == doc["shift_factor"] == 0.1159


def test_our_transformer_conversion_moves_every_row_as_diffusers_does_at_full_size():
    """Each BFL tensor is given distinct row ids (rows only: conversions cut and join along dim 0), so any
    difference in which rows land where, including the final layer's shift/scale swap, shows up."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
    doc = json.loads((DATA / "flux-dev.keys.json").read_text())
    ckpt, start = {}, 0
    for k, shape in doc["state_dict"].items():
        ckpt[k] = torch.arange(start, start + shape[0], dtype=torch.int64)
        start += shape[0]
    ours = flux.convert_bfl_transformer(dict(ckpt))
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(ckpt))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_inspect_reports_flux_parameter_counts():
    from noisesearch_worker.inspect_model import inspect
    assert inspect("flux-dev")["num_parameters"] == 11_901_408_320
    assert inspect("flux-ae")["num_parameters"] == 83_819_683


# ---------- tiny releases, loaded offline ----------

def test_folder_and_single_file_loads_give_the_same_model(release, tiny_registry):
    root, parts = release
    a, b = load(root), load(root, single_file=True)
    assert a.sample_shape == b.sample_shape == (4, 8, 8) and a.image_seq_len == 16
    assert a.num_parameters == b.num_parameters == sum(p.numel() for p in parts["transformer"].parameters())
    for (ka, va), (kb, vb) in zip(sorted(a.transformer.state_dict().items()), sorted(parts["transformer"].state_dict().items())):
        assert ka == kb and torch.equal(va, vb)
    for (ka, va), (kb, vb) in zip(sorted(b.transformer.state_dict().items()), sorted(parts["transformer"].state_dict().items())):
        assert ka == kb and torch.equal(va, vb), ka
    for (ka, va), (kb, vb) in zip(sorted(b.vae.state_dict().items()), sorted(parts["vae"].state_dict().items())):
        assert ka == kb and torch.equal(va, vb), ka
    x = initial_noises([1, 2], a.sample_shape)
    va, vb = a.velocity_fn(["a cat", "a red car"], 3.5)(x, 0.8), b.velocity_fn(["a cat", "a red car"], 3.5)(x, 0.8)
    assert torch.equal(va, vb) and va.abs().mean() > 0.01
    assert torch.equal(a.to_pixels(x), b.to_pixels(x)) and a.to_pixels(x).shape == (2, 3, 16, 16)


def test_our_euler_loop_reproduces_fluxpipeline(release, tiny_registry):
    """The worker's loop (sigma grid, packing, guidance 3.5, timestep = sigma) against diffusers' own pipeline."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    root, parts = release
    m = load(root)
    steps, prompts = 4, ["a photo of a cat", "a red car"]
    x = initial_noises([5, 6], m.sample_shape)
    ours = sample_euler(m.velocity_fn(prompts, 3.5), x.clone(), m.sigmas(1.0, 0.0, steps))
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(str(root / "scheduler"))
    pipe = FluxPipeline(scheduler=sched, **parts)
    out = pipe(prompt=prompts, height=16, width=16, num_inference_steps=steps, guidance_scale=3.5,
               latents=flux.pack_latents(x), output_type="latent").images
    torch.testing.assert_close(flux.pack_latents(ours), out, rtol=1e-4, atol=1e-4)


def test_euler_s_steps_cost_s_forwards_with_the_guidance_embedding(release, tiny_registry):
    root, _ = release
    m = load(root)
    calls = []
    hook = m.transformer.register_forward_hook(lambda mod, args, kwargs_out: calls.append(1))
    try:
        x = initial_noises([1, 2, 3], m.sample_shape)  # 3 samples <= micro-batch 4: one forward per step
        sample_euler(m.velocity_fn(["a dog"] * 3, 3.5), x, m.sigmas(1.0, 0.0, 7))
    finally:
        hook.remove()
    assert len(calls) == 7
    assert m.forwards_per_eval(3.5) == 1 and m.forwards_per_eval(1.0) == 1


def test_missing_and_broken_files_are_clear_start_up_errors(release, tiny_registry, tmp_path):
    root, parts = release
    with pytest.raises(FileNotFoundError, match=r"models\[flux-tiny\]\.transformer: .*nowhere.safetensors does not exist"):
        flux.load_flux_model({**flux_spec(root, single_file=True), "transformer": str(tmp_path / "nowhere.safetensors")},
                             root, CPU, torch.float32, 4)
    with pytest.raises(FileNotFoundError, match=r"models\[flux-tiny\]\.text_encoder_2"):
        flux.load_flux_model({**flux_spec(root), "text_encoder_2": str(tmp_path / "t5")}, root, CPU, torch.float32, 4)
    from safetensors.torch import load_file, save_file
    sd = load_file(str(root / "flux1-dev.safetensors"))
    sd.pop("double_blocks.1.txt_attn.proj.bias")
    save_file(sd, str(tmp_path / "broken.safetensors"))
    with pytest.raises(KeyError, match="double_blocks.1.txt_attn.proj.bias"):
        flux.load_flux_model({**flux_spec(root, single_file=True), "transformer": str(tmp_path / "broken.safetensors")},
                             root, CPU, torch.float32, 4)


# ---------- through the engine ----------

def flux_engine(m) -> Engine:
    return Engine({m.name: m}, {}, TensorStore(256 * 1024 * 1024, 600), Limits(max_batch=4), CPU, torch.float32)


def test_engine_denoises_prompts_counts_nfes_and_replays_recipes(release, tiny_registry):
    root, _ = release
    m = load(root)
    eng = flux_engine(m)
    d = eng.describe().models[0]
    assert d.accepts_prompt and d.family == "flux" and list(d.sample_shape) == [4, 8, 8]
    assert d.default_solver.steps == 30 and d.default_solver.guidance_scale == pytest.approx(3.5)
    seeds = eng.initial_noises(pb.InitialNoisesRequest(model=m.name, seeds=[1, 2, 3]))
    handles = [t.handle for t in seeds.tensors]
    r = eng.denoise(pb.DenoiseRequest(model=m.name, handles=handles, conditions=[pb.Condition(prompt="a cat")],
                                      solver=pb.SolverSettings(solver=pb.SOLVER_EULER, steps=5, guidance_scale=3.5),
                                      sigma_from=1.0, sigma_to=0.0, capture_sigmas=[0.4]))
    assert r.nfes_per_sample == 5 and r.nfes == 15  # the guidance embedding costs no second pass
    assert r.captures[0].sigma == pytest.approx(min(m.sigmas(1, 0, 5)[:-1], key=lambda s: abs(s - 0.4)))
    rebuilt = eng.materialize(pb.MaterializeRequest(recipes=[r.tensors[2].recipe, r.captures[0].tensors[2].recipe]))
    got = eng.fetch(pb.FetchRequest(handles=[t.handle for t in rebuilt.tensors]))
    want = eng.fetch(pb.FetchRequest(handles=[r.tensors[2].handle, r.captures[0].tensors[2].handle]))
    assert [t.raw_data for t in got.tensors] == [t.raw_data for t in want.tensors]
    assert r.tensors[0].recipe.denoise.condition.prompt == "a cat"
    png = eng.decode(pb.DecodeRequest(model=m.name, handles=[r.tensors[0].handle])).png[0]
    assert png.startswith(b"\x89PNG")


def test_a_flux_segment_reuses_the_x_prediction_that_judged_its_input(release, tiny_registry):
    """Denoise.first_predictions on the time-shifted grid: one evaluation fewer, replayed bit for bit."""
    root, _ = release
    m = load(root)
    eng = flux_engine(m)
    cat = [pb.Condition(prompt="a cat")]
    euler = pb.SolverSettings(solver=pb.SOLVER_EULER, steps=6, guidance_scale=3.5)
    noise = [t.handle for t in eng.initial_noises(pb.InitialNoisesRequest(model=m.name, seeds=[4, 5])).tensors]
    x = [t.handle for t in eng.denoise(pb.DenoiseRequest(model=m.name, handles=noise, conditions=cat, solver=euler,
                                                         sigma_from=1.0, sigma_to=0.6)).tensors]
    xp = eng.x_prediction(pb.XPredictionRequest(model=m.name, handles=x, conditions=cat, sigma=0.6, guidance_scale=3.5))
    plain = eng.denoise(pb.DenoiseRequest(model=m.name, handles=x, conditions=cat, solver=euler, sigma_from=0.6, sigma_to=0.0))
    reused = eng.denoise(pb.DenoiseRequest(model=m.name, handles=x, conditions=cat, solver=euler, sigma_from=0.6, sigma_to=0.0,
                                           first_predictions=[t.handle for t in xp.tensors]))
    assert (plain.nfes_per_sample, reused.nfes_per_sample) == (6, 5)  # embedded guidance: one pass per evaluation
    fetch = lambda ts: [t.raw_data for t in eng.fetch(pb.FetchRequest(handles=[t.handle for t in ts])).tensors]  # noqa: E731
    rebuilt = eng.materialize(pb.MaterializeRequest(recipes=[t.recipe for t in reused.tensors]))
    assert fetch(rebuilt.tensors) == fetch(reused.tensors)
    a, b = (torch.stack([torch.frombuffer(bytearray(r), dtype=torch.float32) for r in fetch(ts)]) for ts in (plain.tensors, reused.tensors))
    assert torch.allclose(a, b, atol=1e-4)


def test_engine_refuses_class_labels_and_empty_conditions_for_flux(release, tiny_registry):
    root, _ = release
    m = load(root)
    eng = flux_engine(m)
    h = [t.handle for t in eng.initial_noises(pb.InitialNoisesRequest(model=m.name, seeds=[1])).tensors]
    for conds, field in (([pb.Condition(class_label=3)], "conditions[0].class_label"), ([pb.Condition()], "conditions[0]"),
                         ([], "conditions")):
        with pytest.raises(BadRequest) as e:
            eng.denoise(pb.DenoiseRequest(model=m.name, handles=h, conditions=conds, sigma_from=1.0, sigma_to=0.0))
        assert e.value.field == field
    # unconditional = the empty prompt
    r = eng.x_prediction(pb.XPredictionRequest(model=m.name, handles=h, conditions=[pb.Condition(unconditional=True)],
                                               sigma=1.0))
    assert r.nfes_per_sample == 1
    assert ("flux-tiny", "") in m.text.cache._entries


def test_worker_config_loads_flux_from_json(release, tiny_registry, tmp_path):
    from noisesearch_worker.config import WorkerConfig, build_engine
    root, _ = release
    cfg = tmp_path / "w.json"
    cfg.write_text(json.dumps({"device": "cpu", "max_batch": 2, "verifier_bundles": [],
                               "models": [flux_spec(root, single_file=True)]}))
    eng = build_engine(WorkerConfig.load(str(cfg)))
    assert list(eng.models) == ["flux-tiny"] and eng.models["flux-tiny"].accepts_prompt
    cfg.write_text(json.dumps({"device": "cpu", "verifier_bundles": [],
                               "models": [{"name": "x", "family": "dalle", "checkpoint": "y"}]}))
    with pytest.raises(ValueError, match=r"models\[x\]\.family"):
        build_engine(WorkerConfig.load(str(cfg)))
    assert math.isclose(eng.models["flux-tiny"].mu, flux.calculate_mu(16))


def test_example_configs_parse_and_the_sweep_budgets_add_up():
    from noisesearch_worker.config import WorkerConfig
    examples = Path(__file__).resolve().parents[2] / "configs" / "examples"
    for name in ("worker-flux-dev.json", "worker-flux-dev-single-file.json", "worker-sit-xl-2.json"):
        cfg = WorkerConfig.load(str(examples / name))  # unknown keys would be refused
        assert cfg.models and cfg.verifiers
    sweep = json.loads((examples / "sweep-flux-drawbench.json").read_text())
    per_candidate = sweep["solver"]["steps"]  # Euler: one NFE per step, guidance embedding included
    assert sweep["budget"] == {"search_nfes": 2880, "final_nfes": 30}
    algos = {s["name"]: s["algorithm"] for s in sweep["settings"]}
    assert algos["Ensemble + random"]["candidates"] * per_candidate == 2880
    zo = algos["Ensemble + ZO-2"]
    assert zo["n"] == 2 and zo["iterations"] * zo["n"] * per_candidate == 2880
    p = algos["Ensemble + Paths-2"]
    rounds = round(p["start_sigma"] / (p["delta_b"] - p["delta_f"]))
    assert p["n"] == 2 and rounds * p["n"] * p["m"] * (p["steps_per_backward"] + 1) == 2880

"""The GPU check's code paths on the CPU with tiny configs, so that a GPU run is known to work before it is paid for:
the no-weights throughput part (SiT and FLUX through the worker's velocity functions) and the real-search part
(a worker config of tiny releases, as make_tiny_flux writes)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402
from noisesearch_worker.testing.make_tiny_flux import make  # noqa: E402


def test_tiny_cpu_run_reports_throughput_memory_and_a_real_search(tmp_path, capsys):
    config = make(tmp_path / "releases", threads=2)
    rc = gpu_check.main(["--tiny", "--device", "cpu", "--sit-batches", "1", "2", "--flux-batches", "1", "2",
                         "--repeats", "1", "--config", str(config), "--png-dir", str(tmp_path / "png"),
                         "--out", str(tmp_path / "report.json")])
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert json.loads(capsys.readouterr().out) == report
    for key, batches in (("sit", [1, 2]), ("flux", [1, 2])):
        assert [b["batch"] for b in report[key]["batches"]] == batches
        assert all(b["sample_nfes_per_s"] > 0 and b["calls"] == 1 for b in report[key]["batches"])
    assert report["flux"]["guidance_scale"] == 3.5 and report["flux"]["batches"][0]["image_tokens"] == 16
    (search,) = report["search"]["searches"]
    assert search["model"] == "flux-tiny" and search["search_nfes"] == 4 * 4  # 4 candidates x Euler 4 steps
    assert sorted(search["verifiers"]) == ["aesthetic", "clip-score", "image-reward"]
    assert (tmp_path / "png" / "flux-tiny.png").read_bytes()[1:4] == b"PNG"


def test_bf16_construction_and_forward_on_the_cpu(capsys):
    """The GPU path builds modules under a bf16 default dtype (no fp32 copy of FLUX's 12 B weights): same code, tiny."""
    assert gpu_check.main(["--tiny", "--device", "cpu", "--bf16", "--skip", "search", "--sit-batches", "2",
                           "--flux-batches", "1", "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sit"]["dtype"] == report["flux"]["dtype"] == "torch.bfloat16"
    assert report["flux"]["batches"][0]["sample_nfes_per_s"] > 0


def test_deadline_skips_instead_of_overrunning(capsys):
    assert gpu_check.main(["--tiny", "--device", "cpu", "--deadline-s", "0", "--skip", "search"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sit"] == {"skipped": "deadline"} and report["flux"] == {"skipped": "deadline"}


def test_the_shell_entry_point_runs_here(tmp_path):
    """scripts/gpu-check-paper-models.sh with the dev venv: nothing to install, the same JSON."""
    out = subprocess.run([str(ROOT.parent / "scripts/gpu-check-paper-models.sh"), "--tiny", "--device", "cpu",
                          "--skip", "flux", "search", "--sit-batches", "1", "--repeats", "1"],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin",
                                                                          "PYTHON": sys.executable,
                                                                          "GPU_SITE": str(tmp_path / "site")})
    assert json.loads(out.stdout)["sit"]["batches"][0]["batch"] == 1

import json
import sys
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from noisesearch.worker.v1 import worker_pb2 as pb  # noqa: E402
from noisesearch.worker.v1 import worker_pb2_grpc as rpc  # noqa: E402
from noisesearch_worker.config import WorkerConfig, build_engine  # noqa: E402
from noisesearch_worker.server import make_server  # noqa: E402


import os  # noqa: E402

# NOISESEARCH_TEST_DEVICE=cuda runs the same suite on a GPU (bf16); the default is the CPU (fp32).
TEST_DEVICE = os.environ.get("NOISESEARCH_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def engine():
    return build_engine(WorkerConfig(device=TEST_DEVICE))


@pytest.fixture(scope="session")
def stub(engine):
    """The real worker over real gRPC, on a loopback port."""
    server, port, _ = make_server(engine, "127.0.0.1:0", 64 * 1024 * 1024)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    yield rpc.WorkerStub(channel)
    channel.close()
    server.stop(0).wait()


def machine() -> dict:
    """The CPU a bit-exact fixture was recorded on: float32 kernels (oneDNN, MKL) differ by instruction set, so
    bit-identity holds per machine (test/golden.e2e-spec.ts computes the same from /proc/cpuinfo)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    first = lambda key: next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(key)), "")  # noqa: E731
    isa = sorted(f for f in first("flags").split() if f.startswith(("avx", "amx", "fma", "f16c", "sse4")))
    return {"cpu": first("model name"), "isa": " ".join(isa)}


def label(c: int) -> pb.Condition:
    return pb.Condition(class_label=c)

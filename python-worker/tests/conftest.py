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


def label(c: int) -> pb.Condition:
    return pb.Condition(class_label=c)

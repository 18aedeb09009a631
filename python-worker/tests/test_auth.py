"""The worker's shared token: every Worker call needs `authorization: Bearer <token>` when one is set;
health stays open; without a token configured nothing is checked (the loopback default)."""
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch.worker.v1 import worker_pb2_grpc as rpc
from noisesearch_worker.config import WorkerConfig
from noisesearch_worker.server import make_server, worker_token

TOKEN = "worker-secret-0123456789"


@pytest.fixture(scope="module")
def channel(engine):
    server, port, health_servicer = make_server(engine, "127.0.0.1:0", 1 << 20, token=TOKEN)
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield ch
    ch.close()
    server.stop(0).wait()


@pytest.mark.parametrize("metadata", [None, [("authorization", "Bearer wrong-token")], [("authorization", TOKEN)],
                                      [("authorization", f"Bearer {TOKEN}x")]])
def test_missing_or_wrong_token_is_unauthenticated(channel, metadata):
    with pytest.raises(grpc.RpcError) as e:
        rpc.WorkerStub(channel).Describe(pb.DescribeRequest(), metadata=metadata, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_token_opens_every_call(channel):
    stub = rpc.WorkerStub(channel)
    md = [("authorization", f"Bearer {TOKEN}")]
    assert stub.Describe(pb.DescribeRequest(), metadata=md, timeout=10).models
    made = stub.InitialNoises(pb.InitialNoisesRequest(namespace="auth", model="sit-fmnist", seeds=[1]), metadata=md, timeout=10)
    assert len(made.tensors) == 1
    stub.Release(pb.ReleaseRequest(namespace="auth", all=True), metadata=md, timeout=10)


def test_health_stays_open(channel):
    res = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert res.status == health_pb2.HealthCheckResponse.SERVING


def test_token_from_the_environment(monkeypatch):
    monkeypatch.delenv("NOISESEARCH_WORKER_TOKEN", raising=False)
    assert worker_token(WorkerConfig()) == ""
    monkeypatch.setenv("NOISESEARCH_WORKER_TOKEN", TOKEN)
    assert worker_token(WorkerConfig()) == TOKEN

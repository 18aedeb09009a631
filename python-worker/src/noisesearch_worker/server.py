"""The gRPC servicer (thin: parse, call the engine, map errors to status codes) and the process around it."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from noisesearch.worker.v1 import worker_pb2 as pb
from noisesearch.worker.v1 import worker_pb2_grpc

from .config import WorkerConfig, build_engine
from .engine import BadRequest, Engine, NotRebuildable
from .scheduler import Cancelled, NonFinite
from .run_ops import run_ops
from .store import NamespaceReleased, ResourceExhausted, UnknownHandle

log = logging.getLogger("noisesearch.worker")
SERVICE_NAME = "noisesearch.worker.v1.Worker"


def _guard(method):
    """Run an engine call and answer errors with the right status code and a message that names the field."""
    def wrapper(self, request, context):
        try:
            self.engine.begin_call(getattr(request, "namespace", ""), context.is_active)
            return method(self, request, context)
        except BadRequest as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except UnknownHandle as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{e.field_name}: unknown handle {e.handle!r} (released, expired, or from another namespace)")
        except ResourceExhausted as e:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except NamespaceReleased as e:
            context.abort(grpc.StatusCode.ABORTED, str(e))
        except (NotRebuildable, NonFinite) as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except Cancelled as e:
            code = grpc.StatusCode.DEADLINE_EXCEEDED if (context.time_remaining() or 1) <= 0 else grpc.StatusCode.CANCELLED
            context.abort(code, str(e))
        except MemoryError:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "out of host memory: use smaller batches")
        except Exception as e:  # torch's CUDA OOM is a RuntimeError subclass; answer it, don't die
            if "out of memory" in str(e).lower():
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"device out of memory: {e}")
            log.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    wrapper.__name__ = method.__name__
    return wrapper


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    @_guard
    def Describe(self, request, context):
        return self.engine.describe()

    @_guard
    def InitialNoises(self, request, context):
        return self.engine.initial_noises(request)

    @_guard
    def ZeroOrderNeighbours(self, request, context):
        return self.engine.neighbours(request)

    @_guard
    def Denoise(self, request, context):
        return self.engine.denoise(request, context.is_active)

    @_guard
    def ForwardNoise(self, request, context):
        return self.engine.forward_noise(request)

    @_guard
    def XPrediction(self, request, context):
        return self.engine.x_prediction(request, context.is_active)

    @_guard
    def Score(self, request, context):
        return self.engine.score(request, context.is_active)

    @_guard
    def Decode(self, request, context):
        return self.engine.decode(request, context.is_active)

    @_guard
    def Materialize(self, request, context):
        return self.engine.materialize(request, context.is_active)

    @_guard
    def Fetch(self, request, context):
        return self.engine.fetch(request)

    @_guard
    def Put(self, request, context):
        return self.engine.put(request)

    @_guard
    def Release(self, request, context):
        return self.engine.release(request)

    @_guard
    def Run(self, request, context):
        return run_ops(self.engine, request, context.is_active)


class TokenInterceptor(grpc.ServerInterceptor):
    """Shared-token access control: every Worker call needs `authorization: Bearer <token>` metadata
    (UNAUTHENTICATED otherwise, compared in constant time); grpc.health.v1 stays open."""

    def __init__(self, token: str):
        self._expected = hashlib.sha256(f"Bearer {token}".encode()).digest()

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong worker token (authorization: Bearer <token>)")
        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        got = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(hashlib.sha256(str(got).encode()).digest(), self._expected):
            return continuation(handler_call_details)
        return self._deny


def worker_token(config: WorkerConfig) -> str:
    """NOISESEARCH_WORKER_TOKEN, else the config's `token`; empty = no token checked."""
    return os.environ.get("NOISESEARCH_WORKER_TOKEN", "") or config.token


def make_server(engine: Engine, address: str, max_message_bytes: int,
                token: str = "", threads: int = 64) -> tuple[grpc.Server, int, health.HealthServicer]:
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes)]
    interceptors = [TokenInterceptor(token)] if token else []
    # One thread per in-flight call: a call spends its time waiting on the schedulers (scheduler.py), so the
    # pool bounds how many calls' rows can share micro-batches, not the compute (one loop runs every network).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=options, interceptors=interceptors)
    worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(engine), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return server, port, health_servicer


def serve(config: WorkerConfig, address: str) -> None:
    engine = build_engine(config)
    token = worker_token(config)
    host = address.rsplit(":", 1)[0]
    if not token and host not in ("127.0.0.1", "localhost", "[::1]", "::1") and not address.startswith("unix:"):
        log.warning("serving on %s without a token: set NOISESEARCH_WORKER_TOKEN when the worker is exposed", address)
    server, port, health_servicer = make_server(engine, address, config.max_message_bytes, token, config.grpc_threads)
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    print(json.dumps({"event": "ready", "address": f"{host}:{port}", "device": str(engine.device),
                      "models": sorted(engine.models), "verifiers": sorted(engine.verifiers)}), flush=True)
    stopping = threading.Event()

    def stop(signum, _frame):
        if stopping.is_set():
            return
        stopping.set()
        log.info("signal %s: draining (grace %ss)", signum, config.shutdown_grace_s)
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        server.stop(config.shutdown_grace_s)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Expire idle handles in the background so abandoned namespaces do not hold memory.
    def reap():
        while not stopping.wait(30):
            engine.store.expire()
    threading.Thread(target=reap, daemon=True).start()
    server.wait_for_termination()
    print(json.dumps({"event": "stopped"}), flush=True)
    sys.stdout.flush()

# The PyTorch worker on CUDA: PyTorch comes from the base image (the worker's pyproject.toml does not
# list torch), the worker and its pinned dependencies from python-worker/pyproject.toml.
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t noisesearch-worker .
# Override the base to match your driver, e.g. --build-arg PYTORCH_IMAGE=pytorch/pytorch:<ver>-cuda<x.y>-cudnn9-runtime
ARG PYTORCH_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${PYTORCH_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NOISESEARCH_CHECKPOINTS=/app/python-worker/checkpoints
WORKDIR /app
COPY python-worker/pyproject.toml python-worker/pyproject.toml
COPY python-worker/src python-worker/src
# The embedded default model (Fashion-MNIST SiT + verifiers, ~10 MB); big models come from the /ckpt mount.
COPY python-worker/checkpoints python-worker/checkpoints
RUN pip install "./python-worker[latent]" \
 && useradd --create-home --uid 10001 worker
USER worker
EXPOSE 50151
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s CMD python -c "import grpc,sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; s=g.HealthStub(grpc.insecure_channel('127.0.0.1:50151')).Check(h.HealthCheckRequest(), timeout=4).status; sys.exit(0 if s == h.HealthCheckResponse.SERVING else 1)"
ENTRYPOINT ["python", "-m", "noisesearch_worker"]
# Bound to all interfaces inside the container (the compose network only; the port is not published):
# NOISESEARCH_WORKER_TOKEN must be set, and the orchestrator sends the same token.
CMD ["serve", "--address", "0.0.0.0:50151", "--device", "cuda"]

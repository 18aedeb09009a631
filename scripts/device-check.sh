#!/usr/bin/env bash
# The worker on a CUDA machine (bf16): the worker test suite, the default model's quality and the benchmark.
# Run by the lead through the device tool, carrying .gpu-wheels (grpcio etc. for the GPU's Python).
set -uo pipefail
cd "$(dirname "$0")/.."
pip install -q --no-index --find-links .gpu-wheels grpcio grpcio-health-checking protobuf pillow pytest safetensors 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
cd python-worker
export PYTHONPATH=src FASHION_MNIST_DIR=$PWD/.cache/fmnist NOISESEARCH_TEST_DEVICE=cuda
python -m pytest -q -p no:cacheprovider tests/test_sampling.py tests/test_server.py tests/test_models.py 2>&1 | tail -25
python scripts/bench_worker.py --device cuda --repeats 3 2>&1 | tail -40

#!/usr/bin/env bash
# The worker on a CUDA machine (bf16): the worker test suite, the default model's quality and the benchmark.
# Run through the device tool with the wheels the GPU's Python lacks in .gpu-wheels/ (pip download --python-version 3.12).
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade --no-deps --no-index --find-links "$PWD/.gpu-wheels" grpcio==1.85.3 grpcio-health-checking==1.85.1 protobuf==7.36.2 pytest pluggy iniconfig packaging
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
cd python-worker
export PYTHONPATH=src FASHION_MNIST_DIR=$PWD/.cache/fmnist NOISESEARCH_TEST_DEVICE=cuda
# test_scheduler: the same bytes alone and beside 7 random requests, on the GPU in bf16 (issue 9)
python -m pytest -q -p no:cacheprovider tests/test_sampling.py tests/test_server.py tests/test_models.py tests/test_scheduler.py 2>&1 | tail -25
python scripts/bench_worker.py --device cuda --repeats 3 2>&1 | tail -40

#!/usr/bin/env bash
# GPU check of the paper's models (issue 6, item 7): SiT-XL/2 and FLUX.1-dev at full size with random bf16 weights,
# sample-NFEs per second at several batch sizes and peak memory, as JSON; with weights present
# (NOISESEARCH_GPU_CHECK_CONFIG=worker.json, or --config), one real search per model. Bounded to ~7 minutes.
#
#   scripts/gpu-check-paper-models.sh [gpu_check.py options]      e.g. --out "$OUT/gpu-check.json"
#
# The GPU machine has torch + transformers but no diffusers (and an older grpcio) and no internet. Bring wheels in
# .gpu-wheels/ (git-ignored; carried to the machine), downloaded on a machine with internet:
#
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .gpu-wheels \
#       diffusers==0.42.1 "huggingface_hub>=1.32,<2" importlib_metadata zipp lazy_importer filelock requests \
#       certifi charset_normalizer idna urllib3 httpx httpcore anyio h11
#
# (huggingface_hub stays below 2: transformers 5.17 requires <2.0; diffusers 0.42.1 requires >=1.32.) This script
# installs, with no index and no dependency resolution, only the wheels whose module is missing (or too old, for
# huggingface_hub), into .gpu-site/ (prepended to PYTHONPATH; the machine's site-packages are not touched):
#
#   python -m pip install --no-index --no-deps --find-links .gpu-wheels --target .gpu-site diffusers==0.42.1 ...
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-${NOISESEARCH_PYTHON:-python3}}"
wheels="$root/.gpu-wheels"
site="${GPU_SITE:-$root/.gpu-site}"

# A requirement is installed from .gpu-wheels only when its module does not import (a group's extra members
# only with it: importlib_metadata 10 brings zipp and lazy_importer, requests its four, huggingface_hub 1.x httpx).
need=()
missing() { ! "$py" -c "import $1" >/dev/null 2>&1; }
add_missing() { for m in "$@"; do if missing "$m"; then need+=("$m"); fi; done; }
if missing diffusers; then need+=("diffusers==0.42.1"); fi
add_missing filelock
if missing importlib_metadata; then need+=(importlib_metadata); add_missing zipp lazy_importer; fi
if missing requests; then need+=(requests); add_missing certifi charset_normalizer idna urllib3; fi
if ! "$py" -c "import huggingface_hub as h, sys; v = tuple(int(x) for x in h.__version__.split('.')[:2]); sys.exit(0 if v >= (1, 32) else 1)" >/dev/null 2>&1; then
  need+=("huggingface_hub>=1.32,<2"); add_missing httpx httpcore anyio h11
fi
# The worker's generated stubs (only the real searches with --config need them) want a recent protobuf.
if ! PYTHONPATH="$root/python-worker/src" "$py" -c "from noisesearch.worker.v1 import worker_pb2" >/dev/null 2>&1; then
  need+=("protobuf==7.36.2")
fi
if ((${#need[@]})); then
  if [[ ! -d "$wheels" ]]; then
    echo "error: missing ${need[*]} and no $wheels: download the wheels as this script's header says" >&2
    exit 2
  fi
  echo "installing from $wheels into $site: ${need[*]}" >&2
  "$py" -m pip install -q --no-index --no-deps --find-links "$wheels" --target "$site" "${need[@]}" >&2
fi
export PYTHONPATH="$site:$root/python-worker/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 "$py" "$root/python-worker/scripts/gpu_check.py" "$@"

#!/usr/bin/env bash
# Every test: stale generated stubs, the TypeScript type check, the Python worker (pytest) and jest
# (unit tests beside the code, end-to-end tests in test/ against the real worker over gRPC).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${NOISESEARCH_PYTHON:-$PWD/python-worker/.venv/bin/python}"
echo "== generated stubs"; scripts/gen-proto.sh --check
echo "== typescript"; npx tsc --noEmit -p tsconfig.json
echo "== python worker"; (cd python-worker && "$py" -m pytest -q -p no:cacheprovider tests)
echo "== jest"; npx jest "$@"

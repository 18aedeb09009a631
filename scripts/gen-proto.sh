#!/usr/bin/env bash
# Regenerates every stub from proto/ (the one source of truth for the wire):
#   Python (protobuf + grpcio) -> python-worker/src/noisesearch/...
#   TypeScript (ts-proto, grpc-js services) -> src/gen/...
# With --check, generates into a temporary folder and fails if the committed stubs differ.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${NOISESEARCH_PYTHON:-$root/python-worker/.venv/bin/python}"
out_py="python-worker/src"
out_ts="src/gen"
check=0
if [[ "${1:-}" == "--check" ]]; then
  check=1
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  out_py="$tmp/py"; out_ts="$tmp/ts"
fi
mkdir -p "$out_py" "$out_ts"
protos=$(cd proto && find . -name '*.proto' | sort)
case "$out_py" in /*) ;; *) out_py="$root/$out_py"; out_ts="$root/$out_ts";; esac
(cd proto && "$py" -m grpc_tools.protoc -I . \
  --python_out="$out_py" --pyi_out="$out_py" --grpc_python_out="$out_py" $protos)
(cd proto && "$py" -m grpc_tools.protoc -I . \
  --plugin=protoc-gen-ts_proto="$root/node_modules/.bin/protoc-gen-ts_proto" \
  --ts_proto_out="$out_ts" \
  --ts_proto_opt=outputServices=grpc-js,forceLong=string,esModuleInterop=true,useOptionals=messages,env=node \
  $protos)
# Package markers so the generated Python imports as `noisesearch.worker.v1.worker_pb2`.
for d in $(cd "$out_py" && find noisesearch -type d); do touch "$out_py/$d/__init__.py"; done
if [[ $check == 1 ]]; then
  diff -r "$tmp/py/noisesearch" "$root/python-worker/src/noisesearch" -x __pycache__ >/dev/null \
    && diff -r "$tmp/ts" "$root/src/gen" >/dev/null \
    || { echo "generated stubs are stale: run scripts/gen-proto.sh and commit" >&2; exit 1; }
  echo "generated stubs are up to date"
fi

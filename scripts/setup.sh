#!/usr/bin/env bash
# Installs what is missing, idempotently, and fast when everything is already there:
#   Debian packages (Fashion-MNIST data, for training and the data tests; chromium, for the dashboard's browser test;
#   postgresql, whose server binaries the PostgreSQL tests start a throwaway cluster from; redis-server, which the
#   job queue's tests start on a free port),
#   the Python worker in python-worker/.venv (CPU torch==2.13.0 from pip; or NOISESEARCH_PYTHON=<python> to use
#   an existing interpreter that already has torch, e.g. a CUDA build), and the npm packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
say() { printf '[setup] %s\n' "$*" >&2; }

if [[ ! -d /usr/share/datasets/fashion-mnist ]] && command -v apt-get >/dev/null; then
  say "installing Debian dataset-fashion-mnist"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
# Debian's chromium: the dashboard's browser test (test/dashboard.e2e-spec.ts, driven by playwright-core).
if [[ ! -x /usr/bin/chromium ]] && command -v apt-get >/dev/null; then
  say "installing Debian chromium (the dashboard's browser test)"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# Debian's PostgreSQL server binaries: the job store's PostgreSQL tests and the multi-replica fault test
# start their own throwaway cluster from them (src/jobs/testing/pg-cluster.ts); no system service is used.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  say "installing Debian postgresql (the job store's PostgreSQL tests)"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# Debian's redis-server: the job queue's tests (BullMQ) and the multi-replica fault test start their own
# server on a free loopback port (src/jobs/testing/redis-server.ts); no system service is used.
if ! command -v redis-server >/dev/null && command -v apt-get >/dev/null; then
  say "installing Debian redis-server (the job queue's tests)"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
py_stamp="$(stamp_of python-worker/pyproject.toml)"
if [[ -n "${NOISESEARCH_PYTHON:-}" ]]; then
  py="$NOISESEARCH_PYTHON"
  stamp_file="python-worker/.venv-external.stamp"
  if [[ "$(cat "$stamp_file" 2>/dev/null)" != "$py_stamp:$py" ]]; then
    say "installing the worker into $py"
    "$py" -m pip install -q -e "python-worker[dev,latent,research]"
    echo "$py_stamp:$py" > "$stamp_file"
  fi
else
  venv=python-worker/.venv
  if [[ ! -x $venv/bin/python ]]; then
    say "creating $venv"
    python3 -m venv "$venv"
  fi
  if [[ "$(cat $venv/.stamp 2>/dev/null)" != "$py_stamp" ]]; then
    say "installing the worker (CPU torch==2.13.0) into $venv"
    $venv/bin/pip install -q --disable-pip-version-check -e "python-worker[cpu,dev,latent,research]"
    echo "$py_stamp" > $venv/.stamp
  fi
fi

npm_stamp="$(stamp_of package-lock.json)"
if [[ "$(cat node_modules/.stamp 2>/dev/null)" != "$npm_stamp" ]]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_stamp" > node_modules/.stamp
fi
say "ready"

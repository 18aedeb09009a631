"""A spawned worker exits when its parent dies, even by SIGKILL (no orphan holding memory)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

# The parent: spawns the real worker (`serve --parent-pid <own pid>`), waits for its ready line, prints
# the worker's pid, then sleeps until killed.
PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    args = [sys.executable, "-m", "noisesearch_worker", "serve", "--address", "127.0.0.1:0", *sys.argv[1:]]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith('{"event": "ready"'):
            print(child.pid, flush=True)
            break
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _spawn(watch: bool) -> tuple[subprocess.Popen, int]:
    """The parent process and its worker's pid; `watch`: the worker is told the parent's pid."""
    code = PARENT.replace("*sys.argv[1:]", '"--parent-pid", str(os.getpid())' if watch else "")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = parent.stdout.readline()
    assert line.strip().isdigit(), f"the worker did not start: {line!r}"
    return parent, int(line)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_exits_after_sigkill_of_its_parent():
    # Without --parent-pid the worker outlives a SIGKILLed parent (the defect this guards against).
    parent, worker = _spawn(watch=False)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        assert not _wait_gone(worker, 2)
    finally:
        os.kill(worker, signal.SIGKILL)
        _wait_gone(worker, 10)
    # With it, the worker is gone soon after.
    parent, worker = _spawn(watch=True)
    assert _alive(worker)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    try:
        assert _wait_gone(worker, 30), "the worker outlived its SIGKILLed parent"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_parent_watch_poll_without_pdeathsig():
    """The polling guard alone (other platforms, or a parent that died before prctl): a child whose
    watched pid is not its parent stops at once."""
    code = textwrap.dedent("""
        import signal, sys, time
        from noisesearch_worker import parent_watch
        parent_watch._set_pdeathsig = lambda sig: False
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
        parent_watch.watch_parent(2**22 + 12345, poll_s=0.05, grace_s=5)  # not this process's parent
        time.sleep(30)
        sys.exit(0)
    """)
    t0 = time.monotonic()
    rc = subprocess.run([sys.executable, "-c", code], timeout=20).returncode
    assert rc == 7
    assert time.monotonic() - t0 < 15

"""Exit when the parent process dies, even by SIGKILL (a spawned worker must not outlive its orchestrator).

Two guards: Linux's PR_SET_PDEATHSIG (the kernel sends SIGTERM the moment the parent goes), and a
thread that polls the parent's pid (every other platform, and the race where the parent died before
prctl ran). Either way the worker gets SIGTERM and drains as on any stop; if it is still alive
`grace_s` later, it exits hard.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parent_alive(pid: int) -> bool:
    if os.getppid() != pid:  # re-parented: the parent is gone (its pid may even be reused)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(pid: int, poll_s: float = 1.0, grace_s: float = 10.0) -> None:
    """From now on, this process ends soon after process `pid` (its parent) ends."""
    if pid <= 1:
        return
    _set_pdeathsig(signal.SIGTERM)

    def gone() -> None:
        log.warning("parent process %s is gone: stopping", pid)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(3)

    if not _parent_alive(pid):
        gone_thread = threading.Thread(target=gone, daemon=True)
        gone_thread.start()
        return

    def poll() -> None:
        while _parent_alive(pid):
            time.sleep(poll_s)
        gone()

    threading.Thread(target=poll, name="parent-watch", daemon=True).start()

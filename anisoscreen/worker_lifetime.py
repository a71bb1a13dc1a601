"""Worker processes that die with their parent: no orphan survives a killed CLI.

A ``ProcessPoolExecutor`` worker whose parent is killed with SIGKILL is never told to stop and
keeps its memory for as long as its task runs. :func:`die_with_parent` (the pool's
``initializer``) arms two guards in each worker:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment the
  process that started it exits;
- everywhere, a daemon thread that checks every ``POLL_S`` seconds whether the original parent
  process is still alive and ends the worker when it is not (this also covers the
  ``forkserver`` and ``spawn`` start methods, where the kernel parent is another process).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["POLL_S", "die_with_parent", "pool_initializer_args"]

POLL_S = 1.0
"""Seconds between two checks of the parent process."""

_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the watcher thread still guards
        return


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (pid reused): treat as gone
        return False
    return True


def _watch(parent_pid: int) -> None:
    while True:
        time.sleep(POLL_S)
        if os.getppid() == 1 or not _alive(parent_pid):
            os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this worker when process ``parent_pid`` ends."""
    _set_parent_death_signal()
    if not _alive(parent_pid):  # the parent died before the guard was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="parent-watch").start()


def pool_initializer_args() -> dict:
    """``initializer``/``initargs`` keywords for a ``ProcessPoolExecutor`` of this process."""
    return {"initializer": die_with_parent, "initargs": (os.getpid(),)}

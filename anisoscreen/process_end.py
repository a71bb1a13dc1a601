"""Ending the ``anisoscreen`` process without tearing the interpreter down.

Once torch is loaded, with the compiler stack that the package's custom operators import,
Python's finalisation takes over a second: module teardown and libtorch's destructors. A finished
command needs none of that. :func:`end_process` runs the exit handlers (log handlers, worker
processes, coverage), flushes the standard streams and ends the process with its status. Where
torch is not loaded, or a thread other than a daemon may still be working, it exits normally.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import NoReturn

from anisoscreen.third_party import run_exit_handlers

__all__ = ["end_process"]


def end_process(status: int) -> NoReturn:
    """End the process with ``status``: quickly where torch is loaded, else by ``sys.exit``."""
    if "torch" not in sys.modules or _threads_still_working():
        sys.exit(status)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        # closed, or a broken pipe: nothing more can be written
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _threads_still_working() -> bool:
    """Whether a thread that a normal exit would wait for is still alive."""
    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())

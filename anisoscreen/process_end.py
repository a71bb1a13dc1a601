"""Ending the ``anisoscreen`` process without tearing the interpreter down.

Once torch is loaded, with the compiler stack that the package's custom operators import,
Python's finalisation is slow: module teardown and libtorch's destructors
(``benchmarks/bench_exit.py``). A finished command needs none of that. :func:`end_process`
does what a normal exit does first (waits for the threads it would wait for, runs the exit
handlers: log handlers, worker processes, coverage), flushes the standard streams and ends the
process with its status. Where torch is not loaded it exits normally.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

from anisoscreen.third_party import run_exit_handlers

__all__ = ["end_process"]


def end_process(status: int) -> NoReturn:
    """End the process with ``status``: quickly where torch is loaded, else by ``sys.exit``."""
    if "torch" not in sys.modules:
        sys.exit(status)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        # closed, or a broken pipe: nothing more can be written
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)

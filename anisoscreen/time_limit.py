"""A wall-clock limit on a block of Python code, so one input cannot stall a whole batch.

:func:`time_limit` arms ``SIGALRM`` for the block; when it fires, :class:`TimeLimitError` is
raised inside the running Python code. It derives from ``BaseException`` so that a library's
``except Exception`` cannot swallow it. The limit works in the main thread of a POSIX
process (the CLI, a local flow); elsewhere the block runs unbounded.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["TimeLimitError", "time_limit"]


class TimeLimitError(BaseException):
    """The block ran longer than its limit."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Run the block for at most ``seconds`` (``<= 0``: no limit).

    Raises
    ------
    TimeLimitError
        ``"<what> took longer than <seconds> s"`` when the limit is reached.
    """
    usable = (
        seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeLimitError(f"{what} took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

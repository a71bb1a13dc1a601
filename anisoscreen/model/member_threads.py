"""Ensemble members run side by side on CPU threads, one intra-op thread each.

An ensemble forward on a few cores is a chain of small kernels per member. Split over two
intra-op threads, each kernel spends a large share of its time starting and joining them;
with one member per thread and one intra-op thread each the cores stay busy. On the
first 1,280 structures of the shared pool this takes the 8-member forward from 12.6-14.3 s
to 9.2-10.5 s on 2 cores (``benchmarks/bench_member_threads.py``).

Each member's numbers do not depend on the thread that runs it: the fused edge tensor
product gives every channel block to one thread, so no sum is split across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["MemberThreads"]

T = TypeVar("T")
R = TypeVar("R")


class MemberThreads:
    """Maps a function over ensemble members, on threads when that pays.

    Parameters
    ----------
    threads
        Cores to use; ``None`` reads ``torch.get_num_threads()`` of the calling thread at each
        call, so ``torch.set_num_threads(1)`` turns the threads off.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._pool_shape: tuple[int, int] = (0, 0)
        self._lock = threading.Lock()

    def workers(self, members: int, device: torch.device) -> tuple[int, int]:
        """``(worker threads, intra-op threads per worker)`` for ``members`` on ``device``.

        ``(1, cores)``, the plain sequential loop, on a GPU, for one member or one core.
        """
        cores = self._threads if self._threads is not None else torch.get_num_threads()
        if device.type != "cpu" or members < 2 or cores < 2:
            return 1, cores
        workers = min(members, cores)
        return workers, max(1, cores // workers)

    def map(
        self, function: Callable[[T], R], members: Sequence[T], device: torch.device
    ) -> list[R]:
        """``[function(m) for m in members]``, in member order, under inference mode."""
        workers, intra = self.workers(len(members), device)
        if workers == 1:
            with torch.inference_mode():
                return [function(member) for member in members]

        def run(member: T) -> R:
            torch.set_num_threads(intra)  # per thread: the caller's setting is unchanged
            with torch.inference_mode():  # thread-local, so entered in the worker
                return function(member)

        return list(self._executor(workers, intra).map(run, members))

    def _executor(self, workers: int, intra: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_shape != (workers, intra):
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="anisoscreen-member")
                self._pool_shape = (workers, intra)
            return self._pool

    def close(self) -> None:
        """Stop the worker threads (they also stop with the interpreter)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

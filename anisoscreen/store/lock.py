"""A process lock around read-modify-write upserts into the embedded (montydb) store.

montydb has no unique indexes, so two processes that upsert the same new keys at the same
moment would both find them missing and both insert them. :class:`StoreLock` serialises the
writers of one montydb folder with an exclusive lock on ``<folder>.lock``, next to it, and
keeps a write counter in ``<folder>.generation``: a writer that finds the counter where it
left it knows no other process wrote since, and can keep its in-memory key index instead of
rescanning the collection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from anisoscreen.errors import StoreError

__all__ = ["LOCK_TIMEOUT_S", "StoreLock"]

LOCK_TIMEOUT_S = 600.0
"""Longest wait for another writer before giving up with a :class:`StoreError`."""


class StoreLock:
    """Exclusive writer lock of one embedded store folder, with a write generation counter.

    Parameters
    ----------
    folder
        The montydb folder (``<data_dir>/store``); the lock lives next to it.
    timeout
        Seconds to wait for another writer.
    """

    def __init__(self, folder: str | Path, timeout: float = LOCK_TIMEOUT_S) -> None:
        folder = Path(folder)
        self.folder = folder
        self.lock_path = folder.with_name(folder.name + ".lock")
        self.generation_path = folder.with_name(folder.name + ".generation")
        self.timeout = timeout
        self._lock = FileLock(str(self.lock_path), timeout=timeout, thread_local=False)

    @contextmanager
    def hold(self) -> Iterator[int]:
        """Hold the lock; yields the write generation found on entry."""
        try:
            self._lock.acquire()
        except Timeout as exc:
            raise StoreError(
                f"the embedded store {self.folder} stayed locked by another writer for "
                f"{self.timeout:.0f} s; wait for it to finish (or remove {self.lock_path} if "
                "no anisoscreen process is running)"
            ) from exc
        try:
            yield self.generation()
        finally:
            self._lock.release()

    def generation(self) -> int:
        """The number of locked writes so far (0 for a new store)."""
        try:
            return int(self.generation_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def advance(self) -> int:
        """Count one more write (call while holding the lock); returns the new generation."""
        value = self.generation() + 1
        tmp = self.generation_path.with_name(f"{self.generation_path.name}.{os.getpid()}")
        tmp.write_text(str(value))
        tmp.replace(self.generation_path)
        return value

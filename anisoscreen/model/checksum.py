"""SHA-256 of files: model files and data sets (their caches are keyed by it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_checksum"]


def file_checksum(path: str | Path) -> str:
    """SHA-256 of a file (model files, data sets), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

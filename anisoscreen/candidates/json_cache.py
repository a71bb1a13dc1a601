"""JSON files: gzipped ones written atomically (the remote sources' caches) and any read back.

A fetch from the Materials Project or an OPTIMADE provider saves each chunk or page as it
arrives, so an interrupted fetch resumes where it stopped. A file is written to a temporary
name and renamed, so a crash never leaves half a file that a resumed fetch would trust.
:func:`read_json` reads the JSON(.gz) files users give (oracles, DFPT imports).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from monty.json import jsanitize

__all__ = ["read_json", "read_json_gz", "write_json_gz_atomic"]


def write_json_gz_atomic(path: Path, data: Any) -> None:
    """Write ``data`` (made JSON-safe by ``jsanitize``) to ``path`` as gzipped JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(json.dumps(jsanitize(data, strict=True, enum_values=True)).encode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json_gz(path: Path) -> Any:
    """Read a gzipped JSON file written by :func:`write_json_gz_atomic`."""
    with gzip.open(path, "rt") as handle:
        return json.load(handle)


def read_json(path: Path) -> Any:
    """A JSON file in UTF-8, gzipped when its name ends in ``.gz``.

    Raises
    ------
    OSError, ValueError
        The file cannot be read, or is not JSON (callers say which file, in their terms).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)

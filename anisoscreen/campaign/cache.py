"""The campaign's cache of member objective values per model version (``values-*.npz``).

Written to a temporary file in the same folder and renamed into place, so a reader never
sees half a file. A cache that cannot be read (empty, truncated, not an npz, missing arrays)
is a miss: it is logged with its path and recomputed, never an error of the campaign.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from anisoscreen.errors import StoreError

__all__ = ["read_values", "write_values"]

logger = logging.getLogger(__name__)

Values = tuple[list[str], np.ndarray, str]


def read_values(path: Path) -> Values | None:
    """``(material ids, values (members, ids), model name)`` from ``path``; ``None`` on a miss.

    A missing file is a miss; so is an unreadable one (it is logged and later replaced).
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            ids = [str(i) for i in cached["material_ids"]]
            values = np.asarray(cached["values"], dtype=float)
            model = str(cached["model"])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("campaign cache %s is unreadable (%s); recomputing it", path, exc)
        return None
    if values.ndim != 2 or values.shape[1] != len(ids):
        logger.warning("campaign cache %s has inconsistent shapes; recomputing it", path)
        return None
    return ids, values, model


def write_values(path: Path, ids: list[str], values: np.ndarray, model: str) -> None:
    """Write the cache atomically (temporary file in the same folder, then rename).

    Raises
    ------
    StoreError
        The folder cannot be written (the message names the file).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, material_ids=np.array(ids, dtype=str), values=values, model=model)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(f"cannot write the campaign cache {path}: {exc.strerror or exc}") from exc

"""The campaign's cache of member objective values per model version (``values-*.npz``).

Written to a temporary file in the same folder and renamed into place, so a reader never
sees half a file. A cache that cannot be read (empty, truncated, not an npz, missing arrays)
is a miss: it is logged with its path and recomputed, never an error of the campaign. So is
a cache written before it said whether the spread is calibrated (the factor then came from
eps_poly for every objective).

A campaign whose learner is the residual GP also keeps the pool's member-mean structure
embeddings from the same pass (``embeddings``, read by :func:`read_embeddings`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen.errors import StoreError

__all__ = ["read_embeddings", "read_values", "write_values"]

logger = logging.getLogger(__name__)

Values = tuple[list[str], np.ndarray, str, bool]
"""Material ids, member values ``(members, ids)``, model name and whether their spread is
calibrated."""


def read_values(path: Path) -> Values | None:
    """The cached :data:`Values` of ``path``; ``None`` on a miss.

    A missing file is a miss; so is an unreadable one (it is logged and later replaced) and
    one that does not say whether its spread is calibrated (written by an older version).
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if "spread_calibrated" not in cached.files:
                logger.info("campaign cache %s predates spread calibration; recomputing it", path)
                return None
            ids = [str(i) for i in cached["material_ids"]]
            values = np.asarray(cached["values"], dtype=float)
            model = str(cached["model"])
            calibrated = bool(cached["spread_calibrated"])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("campaign cache %s is unreadable (%s); recomputing it", path, exc)
        return None
    if values.ndim != 2 or values.shape[1] != len(ids):
        logger.warning("campaign cache %s has inconsistent shapes; recomputing it", path)
        return None
    return ids, values, model, calibrated


def read_embeddings(path: Path) -> np.ndarray | None:
    """The cached member-mean embeddings ``(ids, width)`` of ``path``; ``None`` on a miss."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if "embeddings" not in cached.files:
                return None
            embeddings = np.asarray(cached["embeddings"], dtype=float)
            count = len(cached["material_ids"])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("campaign cache %s is unreadable (%s); recomputing it", path, exc)
        return None
    return embeddings if embeddings.ndim == 2 and len(embeddings) == count else None


def write_values(
    path: Path,
    ids: list[str],
    values: np.ndarray,
    model: str,
    spread_calibrated: bool,
    embeddings: np.ndarray | None = None,
) -> None:
    """Write the cache atomically (temporary file in the same folder, then rename).

    ``spread_calibrated``: whether the values' spread carries the model's calibration;
    ``embeddings``: the member-mean structure embeddings ``(ids, width)``, if kept.

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
                arrays: dict[str, Any] = {
                    "material_ids": np.array(ids, dtype=str),
                    "values": values,
                    "model": model,
                    "spread_calibrated": spread_calibrated,
                }
                if embeddings is not None:
                    arrays["embeddings"] = embeddings
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(f"cannot write the campaign cache {path}: {exc.strerror or exc}") from exc

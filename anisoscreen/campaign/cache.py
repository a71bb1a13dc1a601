"""The campaign's caches: member objective values per model version (``values-*.npz``).

Written to a temporary file in the same folder and renamed into place, so a reader never
sees half a file. A cache that cannot be read (empty, truncated, not an npz, missing arrays)
is a miss: it is logged with its path and recomputed, never an error of the campaign. So is
a cache written before it said whether the spread is calibrated (the factor then came from
eps_poly for every objective).

A campaign whose learner is the residual GP also keeps the pool's member-mean structure
embeddings from the same pass (``embeddings``, read by :func:`read_embeddings`).

The pool's graphs are kept too (``graphs.npz``, :func:`read_graphs` and
:func:`write_graphs`), by :func:`~anisoscreen.model.inference.graph_key`, so that each new
model version re-predicts the pool without building a graph again. They are stored as
concatenated arrays (no pickle); atom features are not kept (a model that takes them
computes them on every pass). A damaged graph cache is a miss, like a damaged values cache.

What the selection computes from the structures alone (their prototype labels, their vacuum
geometry) is kept per campaign by structure hash (:func:`cached_rows`), so each round
analyses only structures it has not seen.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen.errors import StoreError
from anisoscreen.model.nn.graph import CrystalGraph

__all__ = [
    "cached_rows",
    "read_embeddings",
    "read_graphs",
    "read_values",
    "write_graphs",
    "write_values",
]

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


def _write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` to a temporary file in ``path``'s folder, then rename it into place.

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
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(f"cannot write the campaign cache {path}: {exc.strerror or exc}") from exc


def cached_rows(
    path: Path, keys: Sequence[str], compute: Callable[[list[int]], np.ndarray]
) -> np.ndarray:
    """One row per key (``len(keys)`` rows), read from the npz at ``path`` where it has them.

    ``compute(indices)`` gives the rows of the keys at ``indices`` that the file lacks (all of
    them for a missing or damaged file); the file is then rewritten with every row it knows.
    """
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                stored_keys, rows = cached["keys"], cached["rows"]
                if len(stored_keys) != len(rows):
                    raise ValueError("inconsistent lengths")
                known = {str(k): row for k, row in zip(stored_keys, rows, strict=True)}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            logger.warning("campaign cache %s is unreadable (%s); recomputing it", path, exc)
    missing = [i for i, key in enumerate(keys) if key not in known]
    if missing:
        for i, row in zip(missing, compute(missing), strict=True):
            known[keys[i]] = row
        _write_npz(
            path, {"keys": np.array(list(known), dtype=str), "rows": np.array(list(known.values()))}
        )
    return np.array([known[key] for key in keys])


def read_graphs(path: Path) -> dict[str, CrystalGraph]:
    """The cached graphs of ``path`` by key; empty on a miss (missing or unreadable file)."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as cached:
            keys = [str(k) for k in cached["keys"]]
            nodes, edges = cached["nodes"], cached["edges"]
            node_at = np.concatenate([[0], np.cumsum(nodes)])
            edge_at = np.concatenate([[0], np.cumsum(edges)])
            numbers, src, dst = cached["atomic_numbers"], cached["edge_src"], cached["edge_dst"]
            vectors, volumes = cached["edge_vec"], cached["volume"]
            depolarisation, gaps = cached["depolarisation"], cached["band_gap"]
            if not len(keys) == len(nodes) == len(edges) == len(volumes) == len(gaps):
                raise ValueError("inconsistent lengths")
            if node_at[-1] != len(numbers) or not edge_at[-1] == len(src) == len(vectors):
                raise ValueError("inconsistent totals")
            return {
                key: CrystalGraph(
                    atomic_numbers=numbers[node_at[i] : node_at[i + 1]],
                    edge_src=src[edge_at[i] : edge_at[i + 1]],
                    edge_dst=dst[edge_at[i] : edge_at[i + 1]],
                    edge_vec=vectors[edge_at[i] : edge_at[i + 1]],
                    volume=float(volumes[i]),
                    depolarisation=depolarisation[i],
                    band_gap=float(gaps[i]),
                )
                for i, key in enumerate(keys)
            }
    except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as exc:
        logger.warning("campaign graph cache %s is unreadable (%s); rebuilding it", path, exc)
        return {}


def write_graphs(path: Path, graphs: Mapping[str, CrystalGraph]) -> None:
    """Write the graphs by key, atomically (see :func:`read_graphs`).

    Raises
    ------
    StoreError
        The folder cannot be written (the message names the file).
    """
    items = list(graphs.values())

    def joined(name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        parts = [np.asarray(getattr(g, name), dtype=dtype) for g in items]
        return np.concatenate(parts) if parts else np.zeros(shape, dtype=dtype)

    _write_npz(
        path,
        {
            "keys": np.array(list(graphs), dtype=str),
            "nodes": np.array([g.num_nodes for g in items], dtype=np.int64),
            "edges": np.array([g.num_edges for g in items], dtype=np.int64),
            "atomic_numbers": joined("atomic_numbers", np.int64, (0,)),
            "edge_src": joined("edge_src", np.int64, (0,)),
            "edge_dst": joined("edge_dst", np.int64, (0,)),
            "edge_vec": joined("edge_vec", np.float64, (0, 3)),
            "volume": np.array([g.volume for g in items], dtype=float),
            "depolarisation": np.array([g.depolarisation for g in items], dtype=float).reshape(
                len(items), 3, 3
            ),
            "band_gap": np.array([g.band_gap for g in items], dtype=float),
        },
    )


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
    arrays: dict[str, Any] = {
        "material_ids": np.array(ids, dtype=str),
        "values": values,
        "model": model,
        "spread_calibrated": spread_calibrated,
    }
    if embeddings is not None:
        arrays["embeddings"] = embeddings
    _write_npz(path, arrays)

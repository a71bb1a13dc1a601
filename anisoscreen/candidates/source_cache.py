"""The checked candidates of a source file, cached by the file's content hash.

Parsing a source's structures and checking each one (:mod:`anisoscreen.structure_checks`)
is most of a repeated screen's candidate stage, and the same bytes always give the same
candidates. So the candidates of a local JSON(.gz) file or of the bundled pool are kept, as
store records with the reasons for the failed ones, in
``<data_dir>/cache/sources/<sha256>.json``; a repeat reads that file, filters the fields on
arrays (:func:`~anisoscreen.candidates.filters.filter_fields`) and parses no structure
until a later stage needs one (:mod:`anisoscreen.candidates.parsed`). The key covers the
file's bytes, this module's :data:`CACHE_VERSION` and the package version, so an edited
file or a new release of the checks reads the source again. Other sources (folders,
Materials Project, OPTIMADE) are not cached here.

The cache keeps the :data:`MAX_CACHED_SOURCES` most recently used sources within
:data:`MAX_CACHE_BYTES`: a hit marks its file as used, and each new file written removes the
least recently used ones beyond either bound (an edited pool leaves its old key behind).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from anisoscreen import __version__
from anisoscreen.candidates.filters import CandidateFields
from anisoscreen.candidates.sources import BUNDLED, CandidateBatch
from anisoscreen.schemas import utcnow

__all__ = [
    "CACHE_VERSION",
    "MAX_CACHED_SOURCES",
    "MAX_CACHE_BYTES",
    "CandidateTable",
    "candidate_table",
    "prune",
    "source_key",
]

CACHE_VERSION = 1
"""Raise when what a source's candidates are cached as changes."""
MAX_CACHED_SOURCES = 8
"""Most sources kept in the cache."""
MAX_CACHE_BYTES = 2 * 1024**3
"""Most bytes the cache keeps (the most recently used file is kept whatever its size)."""


@dataclass
class CandidateTable:
    """A source's candidates as store records, and the inputs that could not be read.

    ``structures`` holds the parsed structures (by position) when the table was just read
    from the source; a table read from the cache has none.
    """

    records: list[dict[str, Any]]
    failures: list[dict[str, str]] = field(default_factory=list)
    structures: list[Structure] | None = None
    cached: bool = False

    @property
    def n_input(self) -> int:
        """Inputs read: candidates and failures."""
        return len(self.records) + len(self.failures)

    @classmethod
    def of(cls, batch: CandidateBatch) -> CandidateTable:
        """The table of a freshly read batch (its store records, without ``last_updated``)."""
        records = []
        for doc in batch.candidates:
            record = doc.store_dict()
            record.pop("last_updated", None)
            records.append(record)
        return cls(records, list(batch.failures), [d.structure for d in batch.candidates])

    def fields(self) -> CandidateFields:
        """The filtered fields of the candidates, as arrays."""
        return CandidateFields.of(self.records)

    def stored(self, index: int) -> dict[str, Any]:
        """The store record of candidate ``index``, stamped now."""
        return {**self.records[index], "last_updated": utcnow()}


def source_key(source: str) -> str | None:
    """The cache key of ``source``'s bytes; ``None`` for a source that is not a file."""
    if source == "bundled":
        data = resources.files("anisoscreen.data").joinpath(BUNDLED).read_bytes()
    else:
        path = Path(source).expanduser()
        if not path.is_file() or not path.name.endswith((".json", ".json.gz")):
            return None
        data = path.read_bytes()
    digest = hashlib.sha256(data)
    digest.update(f"\0{CACHE_VERSION}\0{__version__}".encode())
    return digest.hexdigest()


def _read(path: Path) -> CandidateTable | None:
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
        table = CandidateTable(data["records"], data["failures"], cached=True)
        os.utime(path)  # used now: the last to be pruned
        return table
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: read the source
        return None


def prune(
    cache_dir: Path, max_files: int = MAX_CACHED_SOURCES, max_bytes: int = MAX_CACHE_BYTES
) -> list[Path]:
    """Remove the least recently used cache files beyond ``max_files`` or ``max_bytes``.

    Returns the removed files. Files another process removes meanwhile are skipped.
    """
    entries = []
    for path in cache_dir.glob("*.json"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    entries.sort(reverse=True)  # most recently used first
    removed, kept_bytes = [], 0
    for rank, (_, size, path) in enumerate(entries):
        kept_bytes += size
        if rank == 0 or (rank < max_files and kept_bytes <= max_bytes):
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def _write(path: Path, table: CandidateTable) -> None:
    """Write atomically (a reader never sees half a file); a failure only loses the cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        # one string, one write: json.dump's chunked writes take ~8x as long
        text = json.dumps({"records": table.records, "failures": table.failures})
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
        prune(path.parent)
    except OSError:
        return


def candidate_table(
    source: str, cache_dir: Path | None, load: Callable[[], CandidateBatch]
) -> CandidateTable:
    """The candidates of ``source``: from the cache when its bytes were read before.

    ``load`` reads the source (parsing and checking every structure); its result is cached
    under ``cache_dir`` when ``source`` is a file. ``cache_dir=None`` always reads.
    """
    key = source_key(source) if cache_dir is not None else None
    if key is None or cache_dir is None:
        return CandidateTable.of(load())
    path = cache_dir / f"{key}.json"
    table = _read(path)
    if table is None:
        table = CandidateTable.of(load())
        _write(path, table)
    return table

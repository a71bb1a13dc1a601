"""The shared MP oxide pool that the benchmarks time, read one way for all of them.

Not a script: the benchmarks import it (``from _pool import pool_candidates``). The pool is
``mp_candidates_oxides.json.gz`` in the shared data (3,688 MP structures, 2,712 of them under
40 sites), read as ``--source`` reads a JSON file
(:func:`anisoscreen.candidates.sources.load_local`); the benchmarks time the cells under 40
sites, the screen's limit.
"""

from __future__ import annotations

from pathlib import Path

from anisoscreen.candidates.sources import load_local
from anisoscreen.schemas import CandidateDoc
from anisoscreen.settings import get_settings

POOL_FILE = "mp_candidates_oxides.json.gz"
MAX_SITES = 40


def pool_path(path: str | Path | None = None) -> Path:
    """``path``, else the shared oxide pool."""
    return Path(path) if path else get_settings().shared / "data" / POOL_FILE


def pool_candidates(
    limit: int | None = None, path: str | Path | None = None, max_sites: int | None = MAX_SITES
) -> list[CandidateDoc]:
    """The first ``limit`` (``None``: all) candidates of the pool under ``max_sites`` sites.

    ``max_sites=None`` keeps every cell; ``path`` replaces the shared pool.
    """
    candidates = load_local(pool_path(path)).candidates
    if max_sites is not None:
        candidates = [c for c in candidates if c.nsites < max_sites]
    return candidates if limit is None else candidates[:limit]

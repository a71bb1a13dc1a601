"""Rebuild the full Materials Project dielectric training set through mp-api.

The ``materials.dielectric`` endpoint gives the DFPT tensors (``electronic`` = eps_inf,
``ionic``, ``total``); the ``materials.summary`` endpoint gives structures, formulae and band
gaps. Both are fetched in cached chunks (see :mod:`anisoscreen.candidates.mp`), so an
interrupted build resumes, and joined into the record format of
``shared/data/mp_dielectric_tensors.json.gz`` that training reads.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from monty.json import jsanitize

from anisoscreen.candidates.mp import RetryPolicy, SummarySearcher, cached_ids, fetch_chunked
from anisoscreen.errors import AnisoscreenError

__all__ = ["DIELECTRIC_FIELDS", "STRUCTURE_FIELDS", "build_dielectric_dataset"]

DIELECTRIC_FIELDS = ["material_id", "electronic", "ionic", "total"]
STRUCTURE_FIELDS = ["material_id", "formula_pretty", "nsites", "band_gap", "structure"]
SOURCE = "Materials Project API (materials.dielectric + materials.summary)"


def build_dielectric_dataset(
    dielectric: SummarySearcher,
    summary: SummarySearcher,
    output: str | Path,
    cache_dir: str | Path,
    chunk_size: int = 500,
    retry: RetryPolicy | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> int:
    """Fetch every MP dielectric tensor with its structure and write a JSON.gz training file.

    Parameters
    ----------
    dielectric, summary
        Clients of the ``dielectric`` and ``summary`` endpoints (real or recorded).
    output
        The JSON.gz file to write (atomically).
    cache_dir
        Folder of the resumable chunk cache.
    retry
        Retry policy for transient failures (and the API key to keep out of errors).

    Returns
    -------
    int
        Number of records written.
    """
    cache_dir = Path(cache_dir)
    ids = cached_ids(dielectric, cache_dir / "dielectric", {}, retry)
    if not ids:
        raise AnisoscreenError("the Materials Project returned no dielectric materials")

    def stage(name: str):
        return (lambda done, total: progress(name, done, total)) if progress else None

    tensors = fetch_chunked(
        dielectric,
        ids,
        DIELECTRIC_FIELDS,
        cache_dir / "dielectric",
        chunk_size,
        retry,
        stage("tensors"),
    )
    structures = fetch_chunked(
        summary,
        ids,
        STRUCTURE_FIELDS,
        cache_dir / "summary",
        chunk_size,
        retry,
        stage("structures"),
    )
    by_id = {doc["material_id"]: doc for doc in structures}
    records = []
    for doc in tensors:
        material = by_id.get(doc["material_id"])
        if material is None or doc.get("electronic") is None or material.get("structure") is None:
            continue
        records.append(
            {
                "material_id": doc["material_id"],
                "formula": material.get("formula_pretty"),
                "nsites": material.get("nsites"),
                "band_gap": material.get("band_gap"),
                "structure": material["structure"],
                "eps_electronic": doc["electronic"],
                "eps_ionic": doc.get("ionic"),
                "eps_total": doc.get("total"),
                "born": None,
                "source": SOURCE,
            }
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(json.dumps(jsanitize(records, strict=True)).encode())
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(records)

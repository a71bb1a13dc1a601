"""Where candidates come from: MP summary documents, local files and the bundled demo pool."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import CandidateDoc
from anisoscreen.structures_io import read_structure_inputs

__all__ = ["CandidateBatch", "candidates_from_summary_docs", "load_bundled", "load_local"]

BUNDLED = "bundled_candidates.json.gz"


@dataclass
class CandidateBatch:
    """Candidates read from a source plus the inputs that could not be read."""

    candidates: list[CandidateDoc] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


def candidates_from_summary_docs(docs: Iterable[dict[str, Any]], source: str) -> CandidateBatch:
    """MP summary documents (``material_id``, ``structure``, ``band_gap``...) as candidates."""
    batch = CandidateBatch()
    for i, doc in enumerate(docs):
        ident = str(doc.get("material_id") or f"{source}#{i}")
        try:
            structure = doc["structure"]
            if not isinstance(structure, Structure):
                structure = Structure.from_dict(structure)
        except Exception as exc:  # missing or malformed structure
            batch.failures.append({"material_id": ident, "error": f"invalid structure: {exc}"})
            continue
        batch.candidates.append(
            CandidateDoc.from_structure(
                structure,
                source=source,
                material_id=doc.get("material_id"),
                energy_above_hull=doc.get("energy_above_hull"),
                band_gap=doc.get("band_gap"),
                is_stable=doc.get("is_stable"),
            )
        )
    return batch


def load_bundled() -> CandidateBatch:
    """The demo pool shipped with the package (a sample of the MP oxide pool; CC BY 4.0)."""
    raw = resources.files("anisoscreen.data").joinpath(BUNDLED).read_bytes()
    return candidates_from_summary_docs(json.loads(gzip.decompress(raw)), source="bundled")


def load_local(path: str | Path) -> CandidateBatch:
    """Candidates from a JSON(.gz) list of MP-summary-like documents, structure files or folders."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AnisoscreenError(f"candidate source {path} does not exist")
    batch = CandidateBatch()
    for record in read_structure_inputs([path]):
        if record.structure is None:
            batch.failures.append(
                {"material_id": record.material_id, "error": record.error or "unreadable"}
            )
            continue
        fields = record.fields
        batch.candidates.append(
            CandidateDoc.from_structure(
                record.structure,
                source=record.source,
                # an id from the data, else a stable structure hash (file names can collide)
                material_id=record.material_id if record.explicit_id else None,
                energy_above_hull=fields.get("energy_above_hull"),
                band_gap=fields.get("band_gap"),
                is_stable=fields.get("is_stable"),
            )
        )
    return batch

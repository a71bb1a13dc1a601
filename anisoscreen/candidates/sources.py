"""Where candidates come from: MP summary documents, local files and the bundled demo pool.

Every structure is checked (:mod:`anisoscreen.structure_checks`) as it is read: one that is
not a plausible bulk crystal becomes a per-record failure with the reason, and the rest of the
source goes on. Repeated material ids are reported once as a warning; the last record of each
id is kept (as a sequence of upserts would keep it). A caller can watch each candidate as it
is added (:func:`watching_candidates`), e.g. to start work on it while the source is still read.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenWarning, SourceError
from anisoscreen.handedness import right_handed
from anisoscreen.schemas import CandidateDoc
from anisoscreen.structure_checks import structure_error
from anisoscreen.structures_io import path_text, read_structure_inputs, structure_from_dict

__all__ = [
    "CandidateBatch",
    "candidates_from_summary_docs",
    "load_bundled",
    "load_local",
    "watching_candidates",
]

BUNDLED = "bundled_candidates.json.gz"

CandidateWatcher = Callable[[CandidateDoc], None]
_WATCHER: ContextVar[CandidateWatcher | None] = ContextVar("candidate_watcher", default=None)


@contextmanager
def watching_candidates(watcher: CandidateWatcher | None) -> Iterator[None]:
    """Call ``watcher(doc)`` on every candidate added in this block (``None``: none)."""
    token = _WATCHER.set(watcher)
    try:
        yield
    finally:
        _WATCHER.reset(token)


@dataclass
class CandidateBatch:
    """Candidates read from a source plus the inputs that could not be read."""

    candidates: list[CandidateDoc] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def add(self, ident: str, structure: Structure, source: str, **fields: Any) -> None:
        """Check ``structure`` and add it as a candidate, or as a failure with the reason."""
        problem = structure_error(structure)
        if problem is None:
            try:
                doc = CandidateDoc.from_structure(structure, source=source, **fields)
            except Exception as exc:  # one record never stops the source
                problem = f"invalid candidate: {type(exc).__name__}: {exc}"
        if problem is not None:
            self.failures.append({"material_id": ident, "error": problem})
            return
        self.candidates.append(doc)
        watcher = _WATCHER.get()
        if watcher is not None:
            watcher(doc)

    def drop_duplicate_ids(self, source: str) -> None:
        """Keep the last candidate of each material id; warn once if there were repeats."""
        last = {doc.material_id: doc for doc in self.candidates}
        if len(last) == len(self.candidates):
            return
        counts: dict[str, int] = {}
        for doc in self.candidates:
            counts[doc.material_id] = counts.get(doc.material_id, 0) + 1
        repeated = [ident for ident, n in counts.items() if n > 1]
        shown = ", ".join(repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        warnings.warn(
            f"{source}: {len(repeated)} material id(s) appear more than once ({shown}); "
            "the last record of each is used",
            AnisoscreenWarning,
            stacklevel=2,
        )
        self.candidates = list(last.values())


def candidates_from_summary_docs(docs: Iterable[dict[str, Any]], source: str) -> CandidateBatch:
    """MP summary documents (``material_id``, ``structure``, ``band_gap``...) as candidates."""
    batch = CandidateBatch()
    for i, doc in enumerate(docs):
        ident = str(doc.get("material_id") or f"{source}#{i}")
        try:
            structure = doc["structure"]
            if isinstance(structure, Structure):
                structure = right_handed(structure)
            else:
                structure = structure_from_dict(structure)  # no MontyDecoder: imports nothing
        except Exception as exc:  # missing or malformed structure
            batch.failures.append({"material_id": ident, "error": f"invalid structure: {exc}"})
            continue
        batch.add(
            ident,
            structure,
            source,
            material_id=doc.get("material_id"),
            energy_above_hull=doc.get("energy_above_hull"),
            band_gap=doc.get("band_gap"),
            is_stable=doc.get("is_stable"),
        )
    batch.drop_duplicate_ids(source)
    return batch


def load_bundled() -> CandidateBatch:
    """The demo pool shipped with the package (a sample of the MP oxide pool; CC BY 4.0)."""
    raw = resources.files("anisoscreen.data").joinpath(BUNDLED).read_bytes()
    return candidates_from_summary_docs(json.loads(gzip.decompress(raw)), source="bundled")


def load_local(path: str | Path) -> CandidateBatch:
    """Candidates from a JSON(.gz) list of MP-summary-like documents, structure files or folders."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SourceError(
            f"candidate source {path_text(path)} does not exist; give --source bundled, mp, or an "
            "existing JSON(.gz) file, structure file or folder"
        )
    batch = CandidateBatch()
    for record in read_structure_inputs([path]):
        if record.structure is None:
            batch.failures.append(
                {"material_id": record.material_id, "error": record.error or "unreadable"}
            )
            continue
        fields = record.fields
        batch.add(
            record.material_id,
            record.structure,
            record.source,
            # an id from the data, else the file's id: the same as `predict` gives it
            material_id=record.material_id,
            energy_above_hull=fields.get("energy_above_hull"),
            band_gap=fields.get("band_gap"),
            is_stable=fields.get("is_stable"),
        )
    batch.drop_duplicate_ids(str(path))
    return batch

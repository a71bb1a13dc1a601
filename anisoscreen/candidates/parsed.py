"""Candidate structures parsed once per process and shared by the screening stages.

The candidate stage parses and checks every structure of its source; the prediction and
descriptor stages that run after it in the same process (``run-screen``, ``run_locally``)
take the parsed :class:`~pymatgen.core.Structure` from here instead of decoding the stored
candidate again. An entry is used only when its structure hash equals the stored candidate's
``structure_hash``, so a candidate changed in the store meanwhile (another writer, another
machine) is read from the store. A job on another machine finds nothing here and reads the
store, as before. At most :data:`MAX_STRUCTURES` are kept (the oldest go first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pymatgen.core import Structure

from anisoscreen.schemas import CandidateDoc
from anisoscreen.structures_io import structure_from_dict

__all__ = [
    "MAX_STRUCTURES",
    "ParseCounts",
    "clear",
    "counts",
    "remember",
    "remember_records",
    "structure_of",
]

MAX_STRUCTURES = 100_000
"""Most parsed structures kept (about 20 kB each for a 20-site cell)."""


@dataclass
class ParseCounts:
    """Lookups answered from the parsed structures (``hits``) and not (``misses``)."""

    hits: int = 0
    misses: int = 0


_parsed: OrderedDict[str, tuple[str, Structure | dict[str, Any]]] = OrderedDict()
_counts = ParseCounts()


def remember(candidates: Iterable[CandidateDoc]) -> None:
    """Keep the parsed structures of ``candidates`` for the later stages of this process."""
    for doc in candidates:
        if doc.structure_hash is not None:
            _keep(doc.material_id, doc.structure_hash, doc.structure)


def remember_records(
    records: Iterable[Mapping[str, Any]], structures: Iterable[Structure] | None = None
) -> None:
    """Keep candidates given as store records (with their parsed ``structures``, if any).

    Without ``structures`` a record's structure dict is parsed only when a stage asks for it.
    """
    parsed = iter(structures) if structures is not None else None
    for record in records:
        structure = next(parsed) if parsed is not None else record["structure"]
        if record.get("structure_hash") is not None:
            _keep(record["material_id"], record["structure_hash"], structure)


def _keep(material_id: str, structure_hash: str, structure: Structure | dict[str, Any]) -> None:
    _parsed[material_id] = (structure_hash, structure)
    _parsed.move_to_end(material_id)
    while len(_parsed) > MAX_STRUCTURES:
        _parsed.popitem(last=False)


def structure_of(material_id: str, structure_hash: str | None) -> Structure | None:
    """The parsed structure of ``material_id`` if it has ``structure_hash``, else ``None``."""
    entry = _parsed.get(material_id)
    if entry is None or structure_hash is None or entry[0] != structure_hash:
        _counts.misses += 1
        return None
    _counts.hits += 1
    structure = entry[1]
    if not isinstance(structure, Structure):  # from the source cache: parsed on first use
        structure = structure_from_dict(structure)
        _parsed[material_id] = (entry[0], structure)
    return structure


def counts() -> ParseCounts:
    """How many lookups found a parsed structure since the last :func:`clear`."""
    return ParseCounts(_counts.hits, _counts.misses)


def clear() -> None:
    """Forget every parsed structure and reset the counts."""
    _parsed.clear()
    _counts.hits = _counts.misses = 0

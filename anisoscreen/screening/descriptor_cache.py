"""The ranking descriptors of structures, cached in the results store by structure hash.

Dimensionality, crystal system and space group depend on the structure alone, so they are
stored once per :func:`~anisoscreen.schemas.structure_hash` in the ``descriptors``
collection (:class:`~anisoscreen.schemas.StructureDescriptorsDoc`) and found again by any
later screen, model version or material id with the same structure. An entry of another
:data:`~anisoscreen.screening.descriptors.DESCRIPTOR_VERSION` is not used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from anisoscreen.schemas import Dimensionality, StructureDescriptorsDoc
from anisoscreen.screening.descriptors import DESCRIPTOR_VERSION
from anisoscreen.store import ResultsStore

__all__ = ["DESCRIPTOR_FIELDS", "as_doc", "descriptor_values", "lookup"]

DESCRIPTOR_FIELDS = (
    "dimensionality",
    "crystal_system",
    "space_group_symbol",
    "space_group_number",
)
"""The descriptors a prediction carries for ranking (the cache's values)."""


def descriptor_values(source: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`DESCRIPTOR_FIELDS` of a record or computed result, dimensionality as its enum."""
    values = {name: source.get(name) for name in DESCRIPTOR_FIELDS}
    if values["dimensionality"] is not None:
        values["dimensionality"] = Dimensionality(values["dimensionality"])
    return values


def lookup(results: ResultsStore, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The cached descriptors of those ``hashes`` that have them (one indexed query)."""
    wanted = sorted(set(hashes))
    if not wanted:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for record in results.records(
        "descriptors",
        {"structure_hash": {"$in": wanted}, "version": DESCRIPTOR_VERSION},
        properties=["structure_hash", *DESCRIPTOR_FIELDS],
    ):
        found[record["structure_hash"]] = descriptor_values(record)
    return found


def as_doc(structure_hash: str, values: Mapping[str, Any]) -> StructureDescriptorsDoc:
    """The cache document of one structure's computed descriptors."""
    return StructureDescriptorsDoc(
        structure_hash=structure_hash,
        version=DESCRIPTOR_VERSION,
        **{name: values.get(name) for name in DESCRIPTOR_FIELDS},
    )

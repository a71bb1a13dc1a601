"""The screening criteria as an OPTIMADE filter, and where each of them runs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXCLUDED_FEATURES",
    "NOBLE_GASES_AND_H",
    "OptimadeQuery",
    "ServedFields",
    "build_filter",
    "criteria_placement",
]

NOBLE_GASES_AND_H = ("H", "He", "Ne", "Ar", "Kr", "Xe", "Rn", "Og")
EXCLUDED_FEATURES = ("disorder", "implicit_atoms", "assemblies")
_IDENTIFIER = re.compile(r"^[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$")


@dataclass(frozen=True)
class OptimadeQuery:
    """The criteria pushed to the server, taken from ``ScreeningCriteria``.

    Parameters
    ----------
    max_sites
        Keep fewer sites than this.
    max_energy_above_hull
        eV/atom, exclusive (used where the provider serves a hull energy).
    min_band_gap
        eV, exclusive (used where the provider serves a band gap).
    elements
        Elements a structure may contain (the model's), or ``None`` for any.
    exclude_noble_gas_hydrogen_only
        Require at least one element besides H and the noble gases.
    page_limit
        Entries requested per page (the server may cap it).
    """

    max_sites: int | None = 40
    max_energy_above_hull: float | None = 0.050
    min_band_gap: float | None = 0.5
    elements: tuple[str, ...] | None = None
    exclude_noble_gas_hydrogen_only: bool = True
    page_limit: int = 100

    @classmethod
    def from_criteria(cls, criteria: Any = None, page_limit: int = 100) -> OptimadeQuery:
        """The server-side part of a :class:`~anisoscreen.candidates.filters.ScreeningCriteria`."""
        if criteria is None:
            return cls(page_limit=page_limit)
        elements = criteria.model_elements
        return cls(
            max_sites=criteria.max_sites,
            max_energy_above_hull=criteria.max_energy_above_hull,
            min_band_gap=criteria.min_band_gap,
            elements=tuple(sorted(elements)) if elements is not None else None,
            exclude_noble_gas_hydrogen_only=criteria.exclude_noble_gas_hydrogen_only,
            page_limit=page_limit,
        )


@dataclass(frozen=True)
class ServedFields:
    """The provider's names of the mapped quantities (``None``: not served)."""

    stability: str | None = None
    band_gap: str | None = None

    def response_fields(self) -> list[str]:
        """Top-level properties to request besides the structure."""
        return [name.split(".")[0] for name in (self.stability, self.band_gap) if name]


def _quoted(symbols: list[str]) -> str:
    return ",".join(f'"{s}"' for s in symbols)


def _all_elements() -> list[str]:
    from pymatgen.core.periodic_table import Element

    return [e.symbol for e in Element]


def build_filter(query: OptimadeQuery, fields: ServedFields) -> str:
    """The OPTIMADE filter of ``query``, checked against the OPTIMADE grammar."""
    from optimade.filterparser import LarkParser

    parts = [f"NOT structure_features HAS ANY {_quoted(list(EXCLUDED_FEATURES))}"]
    if query.max_sites is not None:
        parts.append(f"nsites<{query.max_sites}")
    everything = _all_elements()
    allowed = list(query.elements) if query.elements is not None else everything
    if query.elements is not None:
        forbidden = [e for e in everything if e not in set(allowed)]
        if forbidden:
            parts.append(f"NOT elements HAS ANY {_quoted(forbidden)}")
    if query.exclude_noble_gas_hydrogen_only:
        others = [e for e in allowed if e not in NOBLE_GASES_AND_H]
        parts.append(f"elements HAS ANY {_quoted(others)}" if others else 'elements HAS "X"')
    if query.max_energy_above_hull is not None and _filterable(fields.stability):
        parts.append(f"{fields.stability}<{query.max_energy_above_hull!r}")
    if query.min_band_gap is not None and _filterable(fields.band_gap):
        parts.append(f"{fields.band_gap}>{query.min_band_gap!r}")
    text = " AND ".join(parts)
    LarkParser(version=(1, 1, 0)).parse(text)  # raises on anything the grammar rejects
    return text


def _filterable(name: str | None) -> bool:
    return name is not None and bool(_IDENTIFIER.match(name))


def criteria_placement(query: OptimadeQuery, fields: ServedFields) -> dict[str, str]:
    """Where each screening criterion runs for this provider: ``server``, ``client`` or ``no``.

    ``server`` criteria are in the OPTIMADE filter and are applied again on the client.
    """

    def quantity(name: str | None) -> str:
        if name is None:
            return "no"
        return "server" if _filterable(name) else "client"

    return {
        "energy_above_hull": quantity(fields.stability),
        "noble_gas_or_hydrogen_only": "server",
        "num_sites": "server",
        "band_gap": quantity(fields.band_gap),
        "known_dielectric": "client (MP ids only)",
        "unseen_elements": "server" if query.elements is not None else "client",
        "disorder": "server",
    }

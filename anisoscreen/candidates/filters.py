"""The reference screening's criteria, each a named, configurable filter on ``CandidateDoc``.

Lou & Ganose (2025): (i) energy above hull < 50 meV/atom, (ii) not made only of noble gases
and/or hydrogen, (iii) fewer than 40 sites, (iv) band gap > 0.5 eV, (v) not already in the MP
dielectric data. We add (vi): only elements the model saw in training. Filters run in order and
each reports how many candidates it removed. A property that is unknown (a local structure file
has no energy above hull or band gap) does not remove the candidate.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from anisoscreen.schemas import CandidateDoc

__all__ = [
    "CandidateFields",
    "Criterion",
    "FilterResult",
    "ScreeningCriteria",
    "apply_criteria",
    "filter_fields",
    "known_dielectric_ids",
]

NOBLE_GASES_AND_H = frozenset({"H", "He", "Ne", "Ar", "Kr", "Xe", "Rn", "Og"})


@lru_cache(maxsize=1)
def known_dielectric_ids() -> frozenset[str]:
    """Ids of the ~7,180 MP materials that already have DFPT dielectric data (package data)."""
    data = resources.files("anisoscreen.data").joinpath("mp_dielectric_ids.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


class ScreeningCriteria(BaseModel):
    """Thresholds of the candidate filters; ``None`` switches a criterion off."""

    max_energy_above_hull: float | None = Field(0.050, description="eV/atom, exclusive.")
    max_sites: int | None = Field(40, description="Keep structures with fewer sites.")
    min_band_gap: float | None = Field(0.5, description="eV, exclusive.")
    exclude_noble_gas_hydrogen_only: bool = True
    exclude_known_dielectrics: bool = True
    extra_known_ids: list[str] = Field(default_factory=list, description="e.g. training-set ids.")
    model_elements: list[str] | None = Field(None, description="Elements the model has seen.")


@dataclass
class CandidateFields:
    """The filtered fields of many candidates, as arrays (an unknown value is NaN)."""

    material_id: np.ndarray
    energy_above_hull: np.ndarray
    band_gap: np.ndarray
    nsites: np.ndarray
    elements: list[frozenset[str]]

    def __len__(self) -> int:
        return len(self.material_id)

    @classmethod
    def of(cls, rows: Sequence[CandidateDoc | Mapping[str, Any]]) -> CandidateFields:
        """The fields of candidate documents or of their store records."""
        records = [r if isinstance(r, Mapping) else r.__dict__ for r in rows]

        def floats(name: str) -> np.ndarray:
            values = [r.get(name) for r in records]
            return np.array([np.nan if v is None else v for v in values], dtype=float)

        return cls(
            material_id=np.array([r["material_id"] for r in records], dtype=object),
            energy_above_hull=floats("energy_above_hull"),
            band_gap=floats("band_gap"),
            nsites=np.array([r["nsites"] for r in records], dtype=np.int64),
            elements=[frozenset(r["elements"]) for r in records],
        )


def _subset_mask(sets: list[frozenset[str]], allowed: frozenset[str]) -> np.ndarray:
    """Whether each element set is a subset of ``allowed`` (each distinct set checked once)."""
    verdict: dict[frozenset[str], bool] = {}
    return np.array([verdict.setdefault(s, s <= allowed) for s in sets], dtype=bool).reshape(
        len(sets)
    )


@dataclass
class Criterion:
    """One named filter: ``keep(doc)`` is True for candidates that pass.

    ``keep_all(fields)`` is the same test on the arrays of many candidates.
    """

    name: str
    description: str
    keep: Callable[[CandidateDoc], bool]
    keep_all: Callable[[CandidateFields], np.ndarray]


def _criteria(settings: ScreeningCriteria) -> list[Criterion]:
    out: list[Criterion] = []
    if settings.max_energy_above_hull is not None:
        limit = settings.max_energy_above_hull
        out.append(
            Criterion(
                "energy_above_hull",
                f"energy above hull < {limit * 1000:g} meV/atom",
                lambda d: d.energy_above_hull is None or d.energy_above_hull < limit,
                lambda f: np.isnan(f.energy_above_hull) | (f.energy_above_hull < limit),
            )
        )
    if settings.exclude_noble_gas_hydrogen_only:
        out.append(
            Criterion(
                "noble_gas_or_hydrogen_only",
                "not made only of noble gases and/or hydrogen",
                lambda d: not set(d.elements) <= NOBLE_GASES_AND_H,
                lambda f: ~_subset_mask(f.elements, NOBLE_GASES_AND_H),
            )
        )
    if settings.max_sites is not None:
        max_sites = settings.max_sites
        out.append(
            Criterion(
                "num_sites",
                f"fewer than {max_sites} sites",
                lambda d: d.nsites < max_sites,
                lambda f: f.nsites < max_sites,
            )
        )
    if settings.min_band_gap is not None:
        gap = settings.min_band_gap
        out.append(
            Criterion(
                "band_gap",
                f"band gap > {gap:g} eV",
                lambda d: d.band_gap is None or d.band_gap > gap,
                lambda f: np.isnan(f.band_gap) | (f.band_gap > gap),
            )
        )
    if settings.exclude_known_dielectrics:
        known = known_dielectric_ids() | frozenset(settings.extra_known_ids)
        out.append(
            Criterion(
                "known_dielectric",
                "not already in the MP dielectric data or the training set",
                lambda d: d.material_id not in known,
                lambda f: np.array([i not in known for i in f.material_id], dtype=bool).reshape(
                    len(f)
                ),
            )
        )
    if settings.model_elements is not None:
        seen = frozenset(settings.model_elements)
        out.append(
            Criterion(
                "unseen_elements",
                "only elements the model saw in training",
                lambda d: set(d.elements) <= seen,
                lambda f: _subset_mask(f.elements, seen),
            )
        )
    return out


@dataclass
class FilterResult:
    """Candidates that passed and how many each criterion removed (in order)."""

    kept: list[CandidateDoc]
    removed_by: dict[str, int] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        return sum(self.removed_by.values())


def filter_fields(
    fields: CandidateFields, settings: ScreeningCriteria | None = None
) -> tuple[np.ndarray, dict[str, int], dict[str, str]]:
    """The criteria on arrays: indices of the candidates kept, removals and descriptions.

    A candidate is counted against the first criterion it fails, as in
    :func:`apply_criteria`.
    """
    criteria = _criteria(settings or ScreeningCriteria())
    alive = np.ones(len(fields), dtype=bool)
    removed = {}
    for criterion in criteria:
        keep = criterion.keep_all(fields)
        removed[criterion.name] = int(np.count_nonzero(alive & ~keep))
        alive &= keep
    return np.flatnonzero(alive), removed, {c.name: c.description for c in criteria}


def apply_criteria(
    candidates: Iterable[CandidateDoc], settings: ScreeningCriteria | None = None
) -> FilterResult:
    """Run the criteria in order; a candidate is counted against the first one it fails."""
    docs = list(candidates)
    kept, removed, descriptions = filter_fields(CandidateFields.of(docs), settings)
    return FilterResult([docs[i] for i in kept], removed, descriptions)

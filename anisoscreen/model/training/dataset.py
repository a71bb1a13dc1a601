"""The Materials Project DFPT dielectric data set: loading, cleaning and splitting.

Cleaning follows Lou & Ganose (2025): drop duplicates, drop tensors with any diagonal element
below 1, drop entries whose polycrystalline eps_inf exceeds 15. The split is a seeded random
80/10/10 permutation, so it is reproducible from ``(n, seed)`` alone.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from anisoscreen import tensor as tmath
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import structure_id

__all__ = [
    "CleaningReport",
    "DielectricEntry",
    "clean_entries",
    "load_entries",
    "random_split",
]

MAX_EPS_POLY = 15.0
MIN_DIAGONAL = 1.0


@dataclass
class DielectricEntry:
    """One training example: a structure and its high-frequency dielectric tensor."""

    material_id: str
    formula: str
    structure: Structure
    eps_electronic: np.ndarray

    @property
    def irreps(self) -> np.ndarray:
        return tmath.tensor_to_irreps(tmath.symmetrize(self.eps_electronic))


@dataclass
class CleaningReport:
    """How many entries each cleaning rule removed."""

    n_input: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    n_output: int = 0


def _open_json(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return json.load(handle)


def load_entries(path: str | Path) -> list[DielectricEntry]:
    """Read a JSON(.gz) list of ``{material_id, structure, eps_electronic, ...}`` records."""
    path = Path(path)
    if not path.is_file():
        raise AnisoscreenError(f"dielectric data set {path} not found (set ANISOSCREEN_SHARED?)")
    records = _open_json(path)
    entries = []
    for record in records:
        structure = Structure.from_dict(record["structure"])
        entries.append(
            DielectricEntry(
                material_id=record.get("material_id") or structure_id(structure),
                formula=record.get("formula") or structure.composition.reduced_formula,
                structure=structure,
                eps_electronic=np.asarray(record["eps_electronic"], dtype=float),
            )
        )
    return entries


def clean_entries(
    entries: Sequence[DielectricEntry],
    max_eps_poly: float = MAX_EPS_POLY,
    min_diagonal: float = MIN_DIAGONAL,
) -> tuple[list[DielectricEntry], CleaningReport]:
    """Apply the paper's cleaning rules; returns the kept entries and a report."""
    report = CleaningReport(n_input=len(entries))
    removed = {"duplicate": 0, "diagonal_below_1": 0, "eps_poly_above_15": 0}
    seen: set[str] = set()
    kept = []
    for entry in entries:
        # identical structures are duplicates; a material id alone is not (the MP set holds
        # two calculations of different polymorph cells under one id for a few materials)
        key = structure_id(entry.structure)
        if key in seen:
            removed["duplicate"] += 1
            continue
        seen.add(key)
        if np.any(np.diag(entry.eps_electronic) < min_diagonal):
            removed["diagonal_below_1"] += 1
            continue
        if tmath.polycrystalline_average(entry.eps_electronic) > max_eps_poly:
            removed["eps_poly_above_15"] += 1
            continue
        kept.append(entry)
    report.removed = removed
    report.n_output = len(kept)
    return kept, report


def random_split(
    n: int, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, np.ndarray]:
    """Seeded random train/validation/test indices."""
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return {
        "train": np.sort(order[:n_train]),
        "validation": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }

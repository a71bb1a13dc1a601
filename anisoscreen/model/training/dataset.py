"""The Materials Project DFPT dielectric data set: loading, cleaning and splitting.

Cleaning follows Lou & Ganose (2025): drop duplicates, drop tensors with any diagonal element
below 1, drop entries whose polycrystalline eps_inf exceeds 15. The split is a seeded random
80/10/10 permutation, so it is reproducible from ``(n, seed)`` alone.

Every entry carries three targets (:data:`TARGETS`): ``electronic`` (eps_inf), ``ionic``
(eps0, the lattice contribution) and ``total`` (eps_inf + eps0). The ionic and total targets
are heavy-tailed (eps0 in the hundreds near ferroelectric instabilities), so
:func:`target_cleaning` removes, from the **training and validation** subsets only, entries
whose ionic tensor is not positive semi-definite (eigenvalue below ``-MAX_IONIC_NEGATIVE``;
DFPT noise) or whose ionic eps_poly exceeds ``MAX_IONIC_EPS_POLY`` (soft-mode outliers).
The split itself is made on the shared cleaned set, so the three targets share one test set
and eps_total = eps_inf + eps0 can be checked against DFPT on the same structures.
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
    "GAP_TABLE",
    "MAX_IONIC_EPS_POLY",
    "TARGETS",
    "CleaningReport",
    "DielectricEntry",
    "clean_entries",
    "load_entries",
    "random_split",
    "target_cleaning",
]

MAX_EPS_POLY = 15.0
MIN_DIAGONAL = 1.0
TARGETS = ("electronic", "ionic", "total")
MAX_IONIC_EPS_POLY = 100.0
MAX_IONIC_NEGATIVE = 1e-3


@dataclass
class DielectricEntry:
    """One training example: a structure and its DFPT dielectric tensors.

    ``eps_ionic`` / ``eps_total`` are ``None`` where the record lacks them; ``born`` holds the
    per-site Born effective charges (n_sites, 3, 3) where present. ``band_gap_source`` says
    where ``band_gap`` came from: ``"record"``, or ``"matched <material id>"``
    (:mod:`~anisoscreen.model.training.gap_matching`).
    """

    material_id: str
    formula: str
    structure: Structure
    eps_electronic: np.ndarray
    eps_ionic: np.ndarray | None = None
    eps_total: np.ndarray | None = None
    born: np.ndarray | None = None
    band_gap: float | None = None
    band_gap_source: str | None = None

    @property
    def irreps(self) -> np.ndarray:
        return tmath.tensor_to_irreps(tmath.symmetrize(self.eps_electronic))

    def tensor(self, target: str = "electronic") -> np.ndarray:
        """The symmetrised 3x3 tensor of ``target`` (one of :data:`TARGETS`)."""
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; use one of {TARGETS}")
        value = getattr(self, f"eps_{target}")
        if value is None and target == "total" and self.eps_ionic is not None:
            value = self.eps_electronic + self.eps_ionic
        if value is None:
            raise AnisoscreenError(f"{self.material_id} has no eps_{target}")
        return tmath.symmetrize(value)

    def target_irreps(self, target: str = "electronic") -> np.ndarray:
        """The ``0e+2e`` irreps of ``target``'s tensor."""
        return tmath.tensor_to_irreps(self.tensor(target))


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


GAP_TABLE = "mp_dielectric_ids.csv"


def load_entries(path: str | Path, match_gaps: bool = True) -> list[DielectricEntry]:
    """Read a JSON(.gz) list of ``{material_id, structure, eps_electronic, ...}`` records.

    With ``match_gaps`` and the MP id table (:data:`GAP_TABLE`) beside the data file, entries
    without a band gap take the gap of their unique match in it
    (:func:`~anisoscreen.model.training.gap_matching.fill_band_gaps`); the outcome is cached
    by both files' checksums (:func:`~anisoscreen.model.training.gap_matching.match_band_gaps`).
    """
    path = Path(path)
    if not path.is_file():
        raise AnisoscreenError(f"dielectric data set {path} not found (set ANISOSCREEN_SHARED?)")
    records = _open_json(path)
    entries = []

    def optional(record: dict, key: str) -> np.ndarray | None:
        value = record.get(key)
        return None if value is None else np.asarray(value, dtype=float)

    for record in records:
        structure = Structure.from_dict(record["structure"])
        entries.append(
            DielectricEntry(
                material_id=record.get("material_id") or structure_id(structure),
                formula=record.get("formula") or structure.composition.reduced_formula,
                structure=structure,
                eps_electronic=np.asarray(record["eps_electronic"], dtype=float),
                eps_ionic=optional(record, "eps_ionic"),
                eps_total=optional(record, "eps_total"),
                born=optional(record, "born"),
                band_gap=record.get("band_gap"),
                band_gap_source=None if record.get("band_gap") is None else "record",
            )
        )
    table = path.parent / GAP_TABLE
    if match_gaps and table.is_file():
        from anisoscreen.model.training.gap_matching import match_band_gaps

        entries = match_band_gaps(entries, path, table)[0]
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


def target_cleaning(
    entries: Sequence[DielectricEntry],
    target: str,
    max_ionic_eps_poly: float = MAX_IONIC_EPS_POLY,
    max_ionic_negative: float = MAX_IONIC_NEGATIVE,
) -> tuple[np.ndarray, dict[str, int]]:
    """Which entries may train a ``target`` model, and how many each rule removed.

    ``electronic`` keeps everything. ``ionic`` and ``total`` drop entries without an ionic
    tensor (``no_ionic``), with an ionic eigenvalue below ``-max_ionic_negative``
    (``ionic_not_psd``) or with an ionic eps_poly above ``max_ionic_eps_poly``
    (``ionic_eps_poly_above_<bound>``), in that order.

    Returns
    -------
    (np.ndarray, dict)
        A boolean mask over ``entries`` and the removal counts.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; use one of {TARGETS}")
    keep = np.ones(len(entries), dtype=bool)
    if target == "electronic":
        return keep, {}
    bound_rule = f"ionic_eps_poly_above_{max_ionic_eps_poly:g}"
    removed = {"no_ionic": 0, "ionic_not_psd": 0, bound_rule: 0}
    for i, entry in enumerate(entries):
        if entry.eps_ionic is None:
            rule = "no_ionic"
        else:
            ionic = tmath.symmetrize(entry.eps_ionic)
            if np.linalg.eigvalsh(ionic)[0] < -max_ionic_negative:
                rule = "ionic_not_psd"
            elif np.trace(ionic) / 3.0 > max_ionic_eps_poly:
                rule = bound_rule
            else:
                continue
        keep[i] = False
        removed[rule] += 1
    return keep, removed


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

"""PBE band gaps for data-set entries that lack one, matched from the MP id table.

681 of the shared data set's 2,890 entries came without a Materials Project id, and so
without a band gap; the model then has to use its gap-free mode on them. The shared table
``mp_dielectric_ids.csv`` lists every MP material with DFPT data (id, formula, sites, volume,
PBE gap, space group). An entry takes the gap of the one material in that table with its
reduced formula, its space group and a volume per atom within :data:`VOLUME_TOLERANCE`;
where no material or more than one qualifies, the gap stays unknown.

The gap is an *input* of the model (every MP candidate carries one), never its target, and
the matching reads nothing but the structure, so it is the same for every split.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.training.dataset import DielectricEntry

__all__ = ["GapMatchReport", "IdTableRow", "fill_band_gaps", "read_id_table"]

VOLUME_TOLERANCE = 0.03
SYMPREC = 0.1


@dataclass(frozen=True)
class IdTableRow:
    """One row of ``mp_dielectric_ids.csv``."""

    material_id: str
    reduced_formula: str
    volume_per_atom: float
    band_gap: float
    spacegroup: int


@dataclass
class GapMatchReport:
    """How many gap-less entries took a matched gap, and why the others did not."""

    n_without_gap: int = 0
    matched: int = 0
    no_match: int = 0
    ambiguous: int = 0


def read_id_table(path: str | Path) -> list[IdTableRow]:
    """The rows of the MP id table that carry a band gap."""
    path = Path(path)
    if not path.is_file():
        raise AnisoscreenError(f"MP id table {path} not found (set ANISOSCREEN_SHARED?)")
    with path.open(newline="") as handle:
        return [
            IdTableRow(
                material_id=row["material_id"],
                reduced_formula=Composition(row["formula"]).reduced_formula,
                volume_per_atom=float(row["volume"]) / int(row["n_sites"]),
                band_gap=float(row["bandgap_pbe"]),
                spacegroup=int(row["spacegroup"]),
            )
            for row in csv.DictReader(handle)
            if row.get("bandgap_pbe")
        ]


def _space_group(structure: Structure) -> int | None:
    try:
        return int(SpacegroupAnalyzer(structure, symprec=SYMPREC).get_space_group_number())
    except Exception:  # spglib gives up on a few distorted cells
        return None


def fill_band_gaps(
    entries: Sequence[DielectricEntry], table: Sequence[IdTableRow]
) -> tuple[list[DielectricEntry], GapMatchReport]:
    """The entries, those without a band gap given the gap of their unique match in ``table``.

    Entries that have a gap are returned unchanged (the same objects); a matched entry is a
    copy with ``band_gap`` set. See the module docstring for the matching rule.
    """
    by_formula: dict[str, list[IdTableRow]] = defaultdict(list)
    for row in table:
        by_formula[row.reduced_formula].append(row)
    report = GapMatchReport()
    filled: list[DielectricEntry] = []
    for entry in entries:
        if entry.band_gap is not None:
            filled.append(entry)
            continue
        report.n_without_gap += 1
        structure = entry.structure
        volume = structure.volume / len(structure)
        close = [
            row
            for row in by_formula.get(structure.composition.reduced_formula, [])
            if abs(row.volume_per_atom / volume - 1.0) <= VOLUME_TOLERANCE
        ]
        if close:
            space_group = _space_group(structure)
            close = [row for row in close if row.spacegroup == space_group]
        if len(close) == 1:
            report.matched += 1
            filled.append(
                replace(
                    entry,
                    band_gap=close[0].band_gap,
                    band_gap_source=f"matched {close[0].material_id}",
                )
            )
        else:
            report.no_match += not close
            report.ambiguous += len(close) > 1
            filled.append(entry)
    return filled, report

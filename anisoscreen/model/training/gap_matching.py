"""PBE band gaps for data-set entries that lack one, matched from the MP id table.

681 of the shared data set's 2,890 entries came without a Materials Project id, and so
without a band gap; the model then has to use its gap-free mode on them. The shared table
``mp_dielectric_ids.csv`` lists every MP material with DFPT data (id, formula, sites, volume,
PBE gap, space group). An entry takes the gap of the one material in that table with its
reduced formula, its space group and a volume per atom within :data:`VOLUME_TOLERANCE`;
where no material or more than one qualifies, the gap stays unknown.

The gap is an *input* of the model (every MP candidate carries one), never its target, and
the matching reads nothing but the structure, so it is the same for every split.

The matching analyses the symmetry of every gap-less entry with a candidate in the table (about
8 s for the shared set), so :func:`match_band_gaps` keeps its outcome: in the process, and in
``<data_dir>/cache/gap_matching/``, keyed by the SHA-256 of the data file and of the table (and
by the rule's tolerances), so that a changed file is matched again.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from anisoscreen.candidates.json_cache import read_json_gz, write_json_gz_atomic
from anisoscreen.errors import AnisoscreenError, ConfigError
from anisoscreen.model.checksum import file_checksum
from anisoscreen.model.training.dataset import DielectricEntry

__all__ = [
    "GapMatchReport",
    "IdTableRow",
    "fill_band_gaps",
    "match_band_gaps",
    "match_cache_file",
    "read_id_table",
]

LOGGER = logging.getLogger(__name__)
VOLUME_TOLERANCE = 0.03
SYMPREC = 0.1
_CACHE_FORMAT = 1
_MATCHES: dict[str, dict[str, Any]] = {}
"""This process's matching outcomes, by :func:`_cache_key`."""


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


def match_band_gaps(
    entries: Sequence[DielectricEntry], data_path: str | Path, table_path: str | Path
) -> tuple[list[DielectricEntry], GapMatchReport]:
    """:func:`fill_band_gaps` of the entries read from ``data_path``, with ``table_path``'s rows.

    The outcome (which entries took which gap, and the report) is cached in this process and on
    disk (:func:`match_cache_file`), keyed by both files' SHA-256, so a second call analyses no
    symmetry; it gives the same entries as :func:`fill_band_gaps`.
    """
    key = _cache_key(data_path, table_path)
    cache_file = match_cache_file(key)
    outcome = _MATCHES.get(key) or _read_outcome(cache_file)
    if outcome is not None:
        applied = _apply(entries, outcome)
        if applied is not None:
            _MATCHES[key] = outcome
            return applied
    filled, report = fill_band_gaps(entries, read_id_table(table_path))
    outcome = _outcome(entries, filled, report)
    _MATCHES[key] = outcome
    if cache_file is not None:
        try:
            write_json_gz_atomic(cache_file, outcome)
        except OSError as exc:
            LOGGER.warning("could not write the gap-matching cache %s: %s", cache_file, exc)
    return filled, report


def match_cache_file(key: str) -> Path | None:
    """The on-disk cache of one matching outcome (``None`` where the settings are invalid)."""
    from anisoscreen.settings import get_settings

    try:
        data_dir = get_settings().data_dir
    except ConfigError:
        return None
    return data_dir / "cache" / "gap_matching" / f"{key}.json.gz"


def _cache_key(data_path: str | Path, table_path: str | Path) -> str:
    rule = f"v{_CACHE_FORMAT}-vol{VOLUME_TOLERANCE:g}-symprec{SYMPREC:g}"
    return f"{file_checksum(data_path)[:16]}-{file_checksum(table_path)[:16]}-{rule}"


def _read_outcome(cache_file: Path | None) -> dict[str, Any] | None:
    if cache_file is None or not cache_file.is_file():
        return None
    try:
        outcome = read_json_gz(cache_file)
    except (OSError, ValueError, EOFError) as exc:
        LOGGER.warning("ignoring unreadable gap-matching cache %s: %s", cache_file, exc)
        return None
    return outcome if isinstance(outcome, dict) else None


def _outcome(
    entries: Sequence[DielectricEntry], filled: Sequence[DielectricEntry], report: GapMatchReport
) -> dict[str, Any]:
    matches = [
        [index, entry.material_id, new.band_gap, new.band_gap_source]
        for index, (entry, new) in enumerate(zip(entries, filled, strict=True))
        if new is not entry
    ]
    return {"n_entries": len(entries), "matches": matches, "report": asdict(report)}


def _apply(
    entries: Sequence[DielectricEntry], outcome: dict[str, Any]
) -> tuple[list[DielectricEntry], GapMatchReport] | None:
    """``outcome`` applied to ``entries``; ``None`` where it does not fit them."""
    if outcome.get("n_entries") != len(entries):
        return None
    filled = list(entries)
    try:
        for index, material_id, band_gap, source in outcome["matches"]:
            entry = entries[index]
            if entry.material_id != material_id or entry.band_gap is not None:
                return None
            filled[index] = replace(entry, band_gap=float(band_gap), band_gap_source=source)
        return filled, GapMatchReport(**outcome["report"])
    except (KeyError, TypeError, ValueError, IndexError):  # not a cache this module wrote
        return None

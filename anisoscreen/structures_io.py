"""Reading structures from files: CIF, POSCAR/CONTCAR, vasprun.xml, JSON(.gz) record lists.

Reading never raises for one bad input: every input yields a :class:`StructureRecord` that
either holds a structure or an ``error`` saying why it could not be read.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError

__all__ = ["StructureRecord", "is_structure_file", "iter_json_records", "read_structure_inputs"]

_JSON_SUFFIXES = (".json", ".json.gz")
_STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".cif.gz", ".vasp.gz")
_STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR", "vasprun")


@dataclass
class StructureRecord:
    """One input: an identifier, the structure (or the reason it is missing) and extra fields."""

    material_id: str
    structure: Structure | None
    source: str
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    explicit_id: bool = False
    """True when ``material_id`` came from the data (not from a file name or position)."""

    @property
    def formula(self) -> str | None:
        return self.structure.composition.reduced_formula if self.structure is not None else None


def is_structure_file(path: Path) -> bool:
    """Whether ``path`` looks like a structure file we can read."""
    name = path.name
    lower = name.lower()
    return lower.endswith(_STRUCTURE_SUFFIXES) or name.startswith(_STRUCTURE_PREFIXES)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def iter_json_records(path: Path) -> Iterator[StructureRecord]:
    """Records of a JSON(.gz) file holding a list of objects with a ``structure`` dict.

    ``material_id`` is used when present, else ``<file>#<index>``; the other keys are kept in
    ``fields`` (e.g. ``energy_above_hull``, ``band_gap`` of MP summary documents).
    """
    try:
        with _open_text(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        yield StructureRecord(path.name, None, str(path), error=f"unreadable JSON: {exc}")
        return
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        yield StructureRecord(path.name, None, str(path), error="JSON must hold a list of objects")
        return
    for i, obj in enumerate(data):
        ident = f"{path.name}#{i}"
        if not isinstance(obj, dict) or "structure" not in obj:
            yield StructureRecord(ident, None, str(path), error="record has no 'structure'")
            continue
        explicit = bool(obj.get("material_id"))
        ident = str(obj.get("material_id") or ident)
        try:
            structure = Structure.from_dict(obj["structure"])
        except Exception as exc:  # malformed structure dict
            yield StructureRecord(ident, None, str(path), error=f"invalid structure: {exc}")
            continue
        fields = {k: v for k, v in obj.items() if k not in ("structure", "material_id")}
        yield StructureRecord(ident, structure, str(path), fields=fields, explicit_id=explicit)


def _read_file(path: Path) -> Iterator[StructureRecord]:
    if path.name.lower().endswith(_JSON_SUFFIXES):
        yield from iter_json_records(path)
        return
    try:
        structure = Structure.from_file(path)
    except Exception as exc:  # pymatgen raises many types for unreadable files
        yield StructureRecord(path.name, None, str(path), error=f"unreadable structure file: {exc}")
        return
    yield StructureRecord(path.name, structure, str(path))


def read_structure_inputs(inputs: Iterable[str | Path]) -> Iterator[StructureRecord]:
    """Expand files and directories into structure records (directories recursively, sorted).

    Raises
    ------
    AnisoscreenError
        If an input path does not exist (a usage error, unlike an unreadable file).
    """
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            raise AnisoscreenError(f"input {path} does not exist")
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and (is_structure_file(p) or p.name.lower().endswith(_JSON_SUFFIXES))
            )
            for file in files:
                yield from _read_file(file)
        else:
            yield from _read_file(path)

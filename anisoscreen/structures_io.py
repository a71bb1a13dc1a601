"""Reading structures from files: CIF, POSCAR/CONTCAR, vasprun.xml, JSON(.gz), JSON Lines.

JSON files hold a list of records; JSON Lines files (``.jsonl``/``.jsonl.gz``) one record per
line.
Reading never raises for one bad input: every input yields a :class:`StructureRecord` that
either holds a structure or an ``error`` saying why it could not be read.

Record files are streamed: a JSON list is decoded one element at a time and a JSON Lines file
one line at a time, so memory does not grow with the number of records in a file.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError

__all__ = [
    "StructureRecord",
    "is_structure_file",
    "iter_json_lines_records",
    "iter_json_records",
    "read_structure_inputs",
]

_JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz")
_JSON_SUFFIXES = (".json", ".json.gz", *_JSON_LINES_SUFFIXES)
_READ_CHARS = 1 << 16
"""Characters read at a time when streaming a JSON list."""
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


def _open_text(path: Path) -> TextIO:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _iter_json_values(handle: TextIO) -> Iterator[Any]:
    """The elements of a top-level JSON array, decoded one at a time.

    A document that is not an array is yielded whole when it is an object, else a
    ``TypeError`` is raised.

    Raises
    ------
    ValueError
        When the text is not valid JSON (possibly after some elements were yielded).
    """
    decoder = json.JSONDecoder()
    buffer = handle.read(_READ_CHARS)
    while buffer and not buffer.strip():  # leading white space
        buffer = handle.read(_READ_CHARS)
    at_end = not buffer
    start = len(buffer) - len(buffer.lstrip())
    if not buffer[start:].startswith("["):
        document = json.loads(buffer + handle.read())
        if not isinstance(document, dict):
            raise TypeError("JSON must hold a list of objects")
        yield document
        return
    position = start + 1
    expect_comma = False
    while True:
        while position < len(buffer) and buffer[position].isspace():
            position += 1
        if position >= len(buffer) - 1 and not at_end:  # keep one char of look-ahead
            chunk = handle.read(_READ_CHARS)
            at_end = not chunk
            buffer = buffer[position:] + chunk
            position = 0
            continue
        if position >= len(buffer):
            raise ValueError("unterminated JSON list")
        char = buffer[position]
        if char == "]":
            if buffer[position + 1 :].strip() or handle.read().strip():
                raise ValueError("extra data after the JSON list")
            return
        if expect_comma:
            if char != ",":
                raise ValueError(f"expected ',' or ']' in the JSON list, found {char!r}")
            position += 1
            expect_comma = False
            continue
        try:
            value, end = decoder.raw_decode(buffer, position)
        except ValueError:
            if at_end:
                raise
            end = len(buffer)  # the element may continue in the next chunk
        if end >= len(buffer) and not at_end:  # incomplete, or a number cut at the boundary
            chunk = handle.read(_READ_CHARS)
            at_end = not chunk
            buffer = buffer[position:] + chunk
            position = 0
            continue
        yield value
        position = end
        expect_comma = True


def _record(obj: Any, ident: str, source: str) -> StructureRecord:
    """The record of one decoded JSON object (``ident`` when it has no ``material_id``)."""
    if not isinstance(obj, dict) or "structure" not in obj:
        return StructureRecord(ident, None, source, error="record has no 'structure'")
    explicit = bool(obj.get("material_id"))
    ident = str(obj.get("material_id") or ident)
    try:
        structure = Structure.from_dict(obj["structure"])
    except Exception as exc:  # malformed structure dict
        return StructureRecord(ident, None, source, error=f"invalid structure: {exc}")
    fields = {k: v for k, v in obj.items() if k not in ("structure", "material_id")}
    return StructureRecord(ident, structure, source, fields=fields, explicit_id=explicit)


def iter_json_records(path: Path) -> Iterator[StructureRecord]:
    """Records of a JSON(.gz) file holding a list of objects with a ``structure`` dict.

    ``material_id`` is used when present, else ``<file>#<index>``; the other keys are kept in
    ``fields`` (e.g. ``energy_above_hull``, ``band_gap`` of MP summary documents). The list
    is decoded one element at a time (memory does not grow with its length); text that is not
    valid JSON ends the file with one record whose ``error`` says so.
    """
    index = 0
    try:
        with _open_text(path) as handle:
            for value in _iter_json_values(handle):
                yield _record(value, f"{path.name}#{index}", str(path))
                index += 1
    except TypeError as exc:
        yield StructureRecord(path.name, None, str(path), error=str(exc))
    except (OSError, ValueError, EOFError) as exc:
        ident = path.name if index == 0 else f"{path.name}#{index}"
        yield StructureRecord(ident, None, str(path), error=f"unreadable JSON: {exc}")


def iter_json_lines_records(path: Path) -> Iterator[StructureRecord]:
    """Records of a JSON Lines(.gz) file: one object with a ``structure`` dict per line.

    Read one line at a time. A line that is not valid JSON becomes a record with an ``error``
    (id ``<file>#<line number>``) and reading goes on; blank lines are skipped.
    """
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                ident = f"{path.name}#{number}"
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    yield StructureRecord(ident, None, str(path), error=f"unreadable JSON: {exc}")
                    continue
                yield _record(value, ident, str(path))
    except (OSError, EOFError) as exc:
        yield StructureRecord(path.name, None, str(path), error=f"unreadable file: {exc}")


def _read_file(path: Path) -> Iterator[StructureRecord]:
    if path.name.lower().endswith(_JSON_LINES_SUFFIXES):
        yield from iter_json_lines_records(path)
        return
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

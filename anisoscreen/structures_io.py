"""Reading structures from files: CIF, POSCAR/CONTCAR, vasprun.xml, JSON(.gz), JSON Lines.

JSON files hold a list of records; JSON Lines files (``.jsonl``/``.jsonl.gz``) one record per
line.
Reading never raises for one bad input: every input yields a :class:`StructureRecord` that
either holds a structure or an ``error`` saying why it could not be read.

Record files are streamed: a JSON list is decoded one element at a time and a JSON Lines file
one line at a time, so memory does not grow with the number of records in a file.

Hostile files fail alone, with their own error: one record (a list element, an object, a
line) longer than ``MAX_RECORD_CHARS`` characters is an error before it is held in memory;
a CIF that would expand to more than ``cif_bounds.MAX_CIF_SITES`` sites is refused before
the expansion; a CIF or POSCAR longer than ``MAX_STRUCTURE_FILE_CHARS`` is not read; and
parsing one structure file may take at most ``PARSE_SECONDS`` (main thread only, see
:mod:`anisoscreen.time_limit`). Structure dicts are read without monty's decoder
(:func:`structure_from_dict`), left-handed cells are made right-handed
(:mod:`anisoscreen.handedness`), and file names become ids losslessly (:func:`path_text`).

Ids of file inputs follow one rule, the same for ``predict``, the Python API
(:func:`as_records`) and ``run-screen --source`` (see :func:`file_ids`): a structure file's id is
its file name, or, inside a folder where two files share that name, its path relative to the
folder; a record of a JSON(.gz)/JSON Lines file keeps its ``material_id``, else
``<file id>#<index>``.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pymatgen.core import Composition, Element, Lattice, Structure

from anisoscreen.cif_bounds import cif_size_error
from anisoscreen.errors import AnisoscreenError
from anisoscreen.handedness import right_handed
from anisoscreen.time_limit import TimeLimitError, time_limit

__all__ = [
    "StructureRecord",
    "as_records",
    "file_ids",
    "is_structure_file",
    "iter_json_lines_records",
    "iter_json_records",
    "path_text",
    "read_structure_inputs",
    "structure_from_dict",
]

_JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz")
_JSON_SUFFIXES = (".json", ".json.gz", *_JSON_LINES_SUFFIXES)
_READ_CHARS = 1 << 16
"""Characters read at a time when streaming a JSON list."""
MAX_RECORD_CHARS = 16 * 2**20
"""Longest record (list element, object or line) of a record file, in characters."""
MAX_STRUCTURE_FILE_CHARS = 20 * 2**20
"""Most characters (decompressed) of a CIF or POSCAR file (vasprun.xml files are not capped)."""
PARSE_SECONDS = 60.0
"""Most seconds spent parsing one structure file."""
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


def path_text(path: str | Path) -> str:
    r"""``path`` as text any strict JSON reader accepts, distinct paths staying distinct.

    A byte that is not part of valid UTF-8 is written ``\xNN`` and a backslash ``\\``
    (a valid UTF-8 name without a backslash is unchanged), so no lone surrogate reaches an id
    or an output file and the original bytes can be recovered.
    """
    raw = os.fsencode(path)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def _open_text(path: Path) -> TextIO:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


class _TextStream:
    """A text file read in growing chunks, with a cursor, for decoding one value at a time."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.buffer = ""
        self.position = 0
        self.at_end = False

    def more(self) -> None:
        """Drop what was consumed and read more: as much again as is pending (at least a chunk)."""
        pending = self.buffer[self.position :]
        if len(pending) > MAX_RECORD_CHARS:
            raise ValueError(f"a record is longer than {MAX_RECORD_CHARS} characters")
        chunk = self.handle.read(max(_READ_CHARS, len(pending)))
        self.at_end = not chunk
        self.buffer = pending + chunk
        self.position = 0

    def peek(self) -> str | None:
        """The next character that is not white space (``None`` at the end)."""
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position].isspace():
                self.position += 1
            if self.position < len(self.buffer) - 1 or self.at_end:  # one char of look-ahead
                return self.buffer[self.position] if self.position < len(self.buffer) else None
            self.more()

    def value(self, decoder: json.JSONDecoder) -> Any:
        """Decode the value at the cursor (reading more while it may continue)."""
        while True:
            try:
                value, end = decoder.raw_decode(self.buffer, self.position)
            except ValueError:
                if self.at_end:
                    raise
                end = len(self.buffer)  # the value may continue in the next chunk
            if end >= len(self.buffer) and not self.at_end:  # incomplete, or a cut number
                self.more()
                continue
            self.position = end
            return value

    def rest_is_blank(self) -> bool:
        """Whether only white space follows the cursor (read a chunk at a time)."""
        if self.buffer[self.position :].strip():
            return False
        while chunk := self.handle.read(_READ_CHARS):
            if chunk.strip():
                return False
        return True


def _iter_json_values(handle: TextIO) -> Iterator[Any]:
    """The elements of a top-level JSON array, decoded one at a time.

    A document that is not an array is yielded whole when it is an object, else a
    ``TypeError`` is raised. No element or object longer than ``MAX_RECORD_CHARS`` is held.

    Raises
    ------
    ValueError
        When the text is not valid JSON (possibly after some elements were yielded).
    """
    decoder = json.JSONDecoder()
    stream = _TextStream(handle)
    first = stream.peek()
    if first == "{":
        document = stream.value(decoder)
        if not stream.rest_is_blank():
            raise ValueError("extra data after the JSON object")
        yield document
        return
    if first != "[":
        if first is not None and first in '"-0123456789tfn':
            raise TypeError("JSON must hold a list of objects")
        raise ValueError(f"not JSON: the text starts with {first!r}, not '[' or '{{'")
    stream.position += 1
    expect_comma = False
    while True:
        char = stream.peek()
        if char is None:
            raise ValueError("unterminated JSON list")
        if char == "]":
            stream.position += 1
            if not stream.rest_is_blank():
                raise ValueError("extra data after the JSON list")
            return
        if expect_comma:
            if char != ",":
                raise ValueError(f"expected ',' or ']' in the JSON list, found {char!r}")
            stream.position += 1
            expect_comma = False
            continue
        yield stream.value(decoder)
        expect_comma = True


def _plain(value: Any) -> Any:
    """``value`` as plain JSON, with no ``@module``/``@class`` marker left for a decoder.

    A numpy array's encoding becomes its list; every other key starting with ``@`` is dropped.
    """
    if isinstance(value, dict):
        if value.get("@module") == "numpy" and value.get("@class") == "array":
            return _plain(value.get("data"))
        return {k: _plain(v) for k, v in value.items() if not str(k).startswith("@")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def structure_from_dict(data: dict[str, Any]) -> Structure:
    """A pymatgen structure dict read without monty's decoder, made right-handed.

    ``Structure.from_dict`` decodes site properties with ``MontyDecoder``, which imports any
    ``@module`` and calls any ``@class`` named in them. Here the site and structure
    properties are made plain JSON first (:func:`_plain`), so they stay data. A dict whose
    sites carry no properties and only elements (the common case) is built in one step,
    without the per-site objects that ``from_dict`` makes and then copies (same structure).
    """
    if data.get("properties"):
        data = {**data, "properties": _plain(data["properties"])}
    structure = _structure_of_elements(data)
    if structure is None:
        sites = [
            {**site, "properties": _plain(site["properties"])} if site.get("properties") else site
            for site in data["sites"]
        ]
        structure = Structure.from_dict({**data, "sites": sites})
    return right_handed(structure)


def _structure_of_elements(data: dict[str, Any]) -> Structure | None:
    """``Structure.from_dict(data)``, built in one step.

    ``None`` unless every site holds only elements (no oxidation states or spins) and no
    properties.
    """
    species = []
    occupancies: dict[tuple, Composition] = {}  # one per distinct occupancy, as sites share
    for site in data["sites"]:
        entries = site["species"]
        if site.get("properties") or any(entry.keys() != _ELEMENT_KEYS for entry in entries):
            return None
        key = tuple((entry["element"], entry["occu"]) for entry in entries)
        if key not in occupancies:
            occupancies[key] = Composition({Element(e): occu for e, occu in key})
        species.append(occupancies[key])
    return Structure(
        Lattice.from_dict(data["lattice"]),
        species,
        [site["abc"] for site in data["sites"]],
        charge=data.get("charge"),
        labels=[site.get("label") for site in data["sites"]],
        properties=data.get("properties"),
    )


_ELEMENT_KEYS = {"element", "occu"}


def _record(obj: Any, ident: str, source: str) -> StructureRecord:
    """The record of one decoded JSON object (``ident`` when it has no ``material_id``)."""
    if not isinstance(obj, dict) or "structure" not in obj:
        return StructureRecord(ident, None, source, error="record has no 'structure'")
    explicit = bool(obj.get("material_id"))
    ident = str(obj.get("material_id") or ident)
    try:
        structure = structure_from_dict(obj["structure"])
    except Exception as exc:  # malformed structure dict
        return StructureRecord(ident, None, source, error=f"invalid structure: {exc}")
    fields = {k: v for k, v in obj.items() if k not in ("structure", "material_id")}
    return StructureRecord(ident, structure, source, fields=fields, explicit_id=explicit)


def iter_json_records(path: Path, name: str | None = None) -> Iterator[StructureRecord]:
    """Records of a JSON(.gz) file holding a list of objects with a ``structure`` dict.

    ``material_id`` is used when present, else ``<name>#<index>`` (``name``: the file's id,
    by default its file name); the other keys are kept in
    ``fields`` (e.g. ``energy_above_hull``, ``band_gap`` of MP summary documents). The list
    is decoded one element at a time (memory does not grow with its length); text that is not
    valid JSON, or a record longer than ``MAX_RECORD_CHARS``, ends the file with one record
    whose ``error`` says so.
    """
    name, source = name or path_text(path.name), path_text(path)
    index = 0
    try:
        with _open_text(path) as handle:
            for value in _iter_json_values(handle):
                yield _record(value, f"{name}#{index}", source)
                index += 1
    except TypeError as exc:
        yield StructureRecord(name, None, source, error=str(exc))
    except (OSError, ValueError, EOFError) as exc:
        ident = name if index == 0 else f"{name}#{index}"
        yield StructureRecord(ident, None, source, error=f"unreadable JSON: {exc}")


def _lines(handle: TextIO) -> Iterator[str | None]:
    """The lines of ``handle``; ``None`` for a line longer than ``MAX_RECORD_CHARS``.

    An overlong line is skipped a chunk at a time, never held whole.
    """
    while line := handle.readline(MAX_RECORD_CHARS + 1):
        if len(line) <= MAX_RECORD_CHARS or line.endswith("\n"):
            yield line
            continue
        while (rest := handle.readline(_READ_CHARS)) and not rest.endswith("\n"):
            pass
        yield None


def iter_json_lines_records(path: Path, name: str | None = None) -> Iterator[StructureRecord]:
    """Records of a JSON Lines(.gz) file: one object with a ``structure`` dict per line.

    Read one line at a time. A line that is not valid JSON, or longer than
    ``MAX_RECORD_CHARS``, becomes a record with an ``error`` (id ``<file>#<line number>``) and
    reading goes on; blank lines are skipped.
    """
    name, source = name or path_text(path.name), path_text(path)
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(_lines(handle), start=1):
                ident = f"{name}#{number}"
                if line is None:
                    error = f"a line is longer than {MAX_RECORD_CHARS} characters"
                    yield StructureRecord(ident, None, source, error=f"unreadable JSON: {error}")
                    continue
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    yield StructureRecord(ident, None, source, error=f"unreadable JSON: {exc}")
                    continue
                yield _record(value, ident, source)
    except (OSError, EOFError, ValueError) as exc:
        yield StructureRecord(name, None, source, error=f"unreadable file: {exc}")


def _parse_structure_file(path: Path) -> Structure:
    """The structure of a CIF, POSCAR or vasprun file, with the size checks done first.

    CIF and POSCAR text (decompressed) is read up to ``MAX_STRUCTURE_FILE_CHARS``; a CIF's
    site bound is checked before pymatgen expands it. vasprun.xml files are parsed as they
    are (pymatgen streams them).
    """
    if path.name.startswith("vasprun"):
        return Structure.from_file(path)
    with _open_text(path) as handle:
        text = handle.read(MAX_STRUCTURE_FILE_CHARS + 1)
    if len(text) > MAX_STRUCTURE_FILE_CHARS:
        raise ValueError(
            f"the file holds more than {MAX_STRUCTURE_FILE_CHARS} characters, more than is "
            "read from one structure file"
        )
    if not path.name.lower().endswith((".cif", ".cif.gz")):
        return Structure.from_file(path)  # as before (a POTCAR beside it may name the species)
    problem = cif_size_error(text)
    if problem is not None:
        raise ValueError(problem)
    return Structure.from_str(text, fmt="cif")


def file_ids(folder: Path, files: Sequence[Path]) -> dict[Path, str]:
    """The id of each of ``files`` found below ``folder``: the package's one id rule.

    A file's id is its name, or its path relative to ``folder`` (``/``-separated) when
    another of ``files`` has the same name, so ids stay unique and lead back to the file.
    """
    names = Counter(f.name for f in files)
    return {
        f: path_text(f.name if names[f.name] == 1 else f.relative_to(folder).as_posix())
        for f in files
    }


def _read_file(path: Path, name: str | None = None) -> Iterator[StructureRecord]:
    """The records of one file; ``name`` is its id (default: its file name)."""
    if path.name.lower().endswith(_JSON_LINES_SUFFIXES):
        yield from iter_json_lines_records(path, name)
        return
    if path.name.lower().endswith(_JSON_SUFFIXES):
        yield from iter_json_records(path, name)
        return
    name, source = name or path_text(path.name), path_text(path)
    try:
        with time_limit(PARSE_SECONDS, "parsing the file"):
            structure = right_handed(_parse_structure_file(path))
    except TimeLimitError as exc:
        yield StructureRecord(name, None, source, error=f"unreadable structure file: {exc}")
        return
    except Exception as exc:  # pymatgen raises many types for unreadable files
        yield StructureRecord(name, None, source, error=f"unreadable structure file: {exc}")
        return
    yield StructureRecord(name, structure, source)


def read_structure_inputs(inputs: Iterable[str | Path]) -> Iterator[StructureRecord]:
    """Expand files and directories into structure records (directories recursively, sorted).

    Ids follow :func:`file_ids`: a file's name, or its path relative to the folder given
    when two files below it share the name.

    Raises
    ------
    AnisoscreenError
        If an input path does not exist (a usage error, unlike an unreadable file).
    """
    for item in inputs:
        path = Path(item).expanduser()
        if not path.exists():
            raise AnisoscreenError(f"input {path_text(path)} does not exist")
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and (is_structure_file(p) or p.name.lower().endswith(_JSON_SUFFIXES))
            )
            ids = file_ids(path, files)
            for file in files:
                yield from _read_file(file, ids[file])
        else:
            yield from _read_file(path)


def as_records(
    items: Iterable[Structure | StructureRecord | str | Path],
) -> Iterator[StructureRecord]:
    """Records of the Python API's inputs, under the ids of :func:`file_ids`.

    A path (file or folder) is read as ``predict`` reads it (:func:`read_structure_inputs`),
    so it gets the same ids; a record passes as it is; a :class:`Structure` object, having no
    file, gets its structure hash (:func:`~anisoscreen.schemas.structure_id`).
    """
    from anisoscreen.schemas import structure_id

    for item in items:
        if isinstance(item, StructureRecord):
            yield item
        elif isinstance(item, str | Path):
            yield from read_structure_inputs([item])
        else:
            yield StructureRecord(structure_id(item), item, "python")

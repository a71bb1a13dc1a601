"""Hostile or unusual input files fail alone, with their own error line, and cost little.

A crafted CIF that expands to 96,000 sites, a structure dict whose site properties name a
module to import, a left-handed cell, a file name that is not UTF-8, and junk JSON far larger
than any record.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import CLI
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from anisoscreen import cif_bounds, structures_io
from anisoscreen.candidates.sources import candidates_from_summary_docs, load_local
from anisoscreen.cif_bounds import cif_site_bound
from anisoscreen.handedness import is_left_handed
from anisoscreen.structure_checks import check_structure
from anisoscreen.structures_io import (
    iter_json_lines_records,
    iter_json_records,
    path_text,
    read_structure_inputs,
)


def crafted_cif(positions: int = 500, a: float = 40.0) -> str:
    """``positions`` general positions in Fm-3m (192 operations), no operations listed."""
    rng = random.Random(0)
    lines = [
        "data_crafted",
        *(f"_cell_length_{x} {a}" for x in "abc"),
        *(f"_cell_angle_{x} 90" for x in ("alpha", "beta", "gamma")),
        "_symmetry_space_group_name_H-M 'F m -3 m'",
        "_symmetry_Int_Tables_number 225",
        "loop_",
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_occupancy",
    ]
    for i in range(positions):
        x, y, z = (rng.random() for _ in range(3))
        lines.append(f"O{i} O {x:.5f} {y:.5f} {z:.5f} 1")
    return "\n".join(lines) + "\n"


def rocksalt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def left_handed_rocksalt() -> Structure:
    """Rock salt on (a, b, -c): the same atoms at the same Cartesian positions."""
    right = rocksalt()
    matrix = right.lattice.matrix * np.array([[1], [1], [-1]])
    frac = right.frac_coords * np.array([1, 1, -1])
    return Structure(Lattice(matrix), right.species, frac)


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "a-good.cif").write_text(str(CifWriter(rocksalt(), symprec=0.01)))
    (tmp_path / "b-crafted.cif").write_text(crafted_cif())
    rocksalt().scale_lattice(80.0).to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    return tmp_path


def test_the_site_bound_is_positions_times_operations():
    assert cif_site_bound(crafted_cif()) == 500 * 192 == 96_000
    assert cif_site_bound(str(CifWriter(rocksalt(), symprec=0.01))) == 2 * 192
    assert cif_site_bound(str(CifWriter(rocksalt()))) == 8  # P1, operations listed
    listed = crafted_cif(3).replace(
        "loop_\n", "loop_\n_symmetry_equiv_pos_as_xyz\nx,y,z\n-x,-y,-z\nloop_\n", 1
    )
    assert cif_site_bound(listed) == 3 * 2  # listed operations win over the symbol
    assert cif_site_bound(crafted_cif(2) + crafted_cif(3).replace("crafted", "second")) == 5 * 192


def test_a_crafted_cif_is_refused_before_expansion_and_the_other_files_go_on(folder):
    started = time.monotonic()
    records = list(read_structure_inputs([folder]))
    assert time.monotonic() - started < 10  # the expansion alone takes minutes
    by_id = {r.material_id: r for r in records}
    assert set(by_id) == {"a-good.cif", "b-crafted.cif", "POSCAR"}
    assert by_id["b-crafted.cif"].structure is None
    assert "expands to up to 96000 sites" in by_id["b-crafted.cif"].error
    assert "\n" not in by_id["b-crafted.cif"].error
    assert len(by_id["a-good.cif"].structure) == len(by_id["POSCAR"].structure) == 8

    batch = load_local(folder)  # run-screen --source FOLDER
    assert [f["material_id"] for f in batch.failures] == ["b-crafted.cif"]
    assert len(batch.candidates) == 2


def test_the_parse_time_of_one_file_is_bounded(folder, monkeypatch):
    monkeypatch.setattr(cif_bounds, "MAX_CIF_SITES", 10**6)  # let the expansion start
    monkeypatch.setattr(structures_io, "PARSE_SECONDS", 1.0)
    started = time.monotonic()
    records = {r.material_id: r for r in read_structure_inputs([folder])}
    assert time.monotonic() - started < 15
    assert records["b-crafted.cif"].error.endswith("parsing the file took longer than 1 s")
    assert records["a-good.cif"].structure is not None and records["POSCAR"].structure is not None


@pytest.mark.slow
def test_predict_writes_an_error_line_for_the_crafted_cif_and_predicts_the_rest(folder, tmp_path):
    output = tmp_path / "out" / "predictions.jsonl"
    code = CLI
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code, "predict", str(folder), "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert time.monotonic() - started < 120
    assert out.returncode == 3, out.stdout + out.stderr
    lines = {d["material_id"]: d for d in map(json.loads, output.read_text().splitlines())}
    assert set(lines) == {"a-good.cif", "b-crafted.cif", "POSCAR"}
    assert "expands to up to 96000 sites" in lines["b-crafted.cif"]["error"]
    assert "error" not in lines["a-good.cif"] and "error" not in lines["POSCAR"]


def test_site_properties_are_read_without_importing_any_module(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_payload_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('pwned')\nclass Boom:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = rocksalt().as_dict()
    payload = {"@module": "evil_payload_mod", "@class": "Boom", "x": 1}
    array = {"@module": "numpy", "@class": "array", "dtype": "float64", "data": [1.0, 2.0]}
    for site in data["sites"]:
        site["properties"] = {"payload": payload, "magmom": array}
    data["properties"] = {"nested": [payload]}
    path = tmp_path / "pool.json"
    path.write_text(json.dumps([{"material_id": "x-1", "structure": data}]))

    (record,) = iter_json_records(path)
    batch = candidates_from_summary_docs([{"material_id": "x-2", "structure": data}], "test")
    assert not marker.exists()  # MontyDecoder would have imported evil_payload_mod
    assert "evil_payload_mod" not in sys.modules
    assert record.structure is not None and [c.material_id for c in batch.candidates] == ["x-2"]
    site = record.structure[0]
    assert site.properties == {"payload": {"x": 1}, "magmom": [1.0, 2.0]}
    assert record.structure.properties == {"nested": [{"x": 1}]}


def test_a_left_handed_cell_is_accepted_and_made_right_handed(tmp_path):
    left = left_handed_rocksalt()
    assert is_left_handed(left) and check_structure(left) == []
    left.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    (tmp_path / "pool.json").write_text(
        json.dumps([{"material_id": "left-1", "structure": left.as_dict()}])
    )
    records = {r.material_id: r for r in read_structure_inputs([tmp_path])}
    for record in records.values():
        assert record.error is None and not is_left_handed(record.structure)
        # the same atoms: fractional coordinates in the left-handed cell equal up to a whole cell
        frac = left.lattice.get_fractional_coords(record.structure.cart_coords) - left.frac_coords
        assert np.abs(frac - np.round(frac)).max() < 1e-6
        assert record.structure.volume == pytest.approx(rocksalt().volume)
    batch = load_local(tmp_path / "pool.json")
    assert [c.material_id for c in batch.candidates] == ["left-1"] and not batch.failures
    docs = candidates_from_summary_docs([{"material_id": "left-2", "structure": left}], "test")
    assert not is_left_handed(docs.candidates[0].structure)


def test_file_names_that_are_not_utf8_become_ids_losslessly(tmp_path):
    text = str(CifWriter(rocksalt()))
    folder = os.fsencode(tmp_path)
    names = [b"caf\xe9.cif", b"caf\\xe9.cif", "café.cif".encode()]
    for name in names:
        with open(os.path.join(folder, name), "w") as handle:
            handle.write(text)
    with open(os.path.join(folder, b"bad\xff.json"), "w") as handle:
        json.dump([{"structure": rocksalt().as_dict()}], handle)
    ids = sorted(r.material_id for r in read_structure_inputs([tmp_path]))
    assert ids == sorted(["caf\\xe9.cif", "caf\\\\xe9.cif", "café.cif", "bad\\xff.json#0"])
    for ident in ids:  # strict UTF-8 and strict JSON: no lone surrogates
        assert json.loads(json.dumps(ident, ensure_ascii=False).encode("utf-8")) == ident
    assert path_text(os.fsdecode(b"/x/caf\xe9")) == "/x/caf\\xe9"


def peak_bytes(read) -> tuple[list, int]:
    tracemalloc.start()
    try:
        records = list(read())
        return records, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("head", "filler", "error"),
    [
        ('["', b"A", "a record is longer than 1048576 characters"),  # one endless string
        ('{"a": "', b"A", "a record is longer than 1048576 characters"),  # one endless object
        ("[", b"1", "a record is longer than 1048576 characters"),  # an endless number
        ("junk", b"A", "not JSON: the text starts with 'j', not '[' or '{'"),
    ],
    ids=["string", "object", "number", "junk"],
)
def test_junk_json_is_an_error_without_reading_it_whole(tmp_path, monkeypatch, head, filler, error):
    monkeypatch.setattr(structures_io, "MAX_RECORD_CHARS", 2**20)
    path = tmp_path / "junk.json.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(head.encode() + filler * (32 * 2**20))  # 32 MB of text
    records, peak = peak_bytes(lambda: iter_json_records(path))
    assert len(records) == 1 and records[0].error == f"unreadable JSON: {error}"
    assert peak < 8 * 2**20  # a few times the record cap, not the file


def test_an_overlong_json_line_is_one_failure_and_the_next_lines_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(structures_io, "MAX_RECORD_CHARS", 2**20)
    path = tmp_path / "pool.jsonl"
    good = json.dumps({"material_id": "mp-1", "structure": rocksalt().as_dict()})
    with open(path, "w") as handle:
        handle.write('{"x": "' + "A" * (32 * 2**20) + '"}\n' + good + "\n")
    records, peak = peak_bytes(lambda: iter_json_lines_records(path))
    assert [r.material_id for r in records] == ["pool.jsonl#1", "mp-1"]
    assert records[0].error == "unreadable JSON: a line is longer than 1048576 characters"
    assert records[1].structure is not None and peak < 8 * 2**20


@pytest.mark.slow
def test_run_screen_on_a_folder_lists_the_crafted_cif_and_screens_the_rest(folder, tmp_path):
    (folder / "[red]x.cif").write_text("not a cif\x1b[2J")
    code = CLI
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run(
        [sys.executable, "-c", code, "run-screen", "--source", str(folder), "--include-known"]
        + ["--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 3, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(
        line.strip().startswith("b-crafted.cif: unreadable structure file: the CIF expands")
        for line in lines
    )
    assert any(line.strip().startswith("[red]x.cif: unreadable") for line in lines)
    assert "\x1b" not in out.stdout
    assert out.stderr.strip().splitlines()[-1].startswith("error: 2 of 4 records failed")


@pytest.mark.slow
def test_a_left_handed_cell_is_predicted_as_its_right_handed_twin():
    from anisoscreen.model.inference import PredictionFailure, predict_structures

    right = rocksalt().scale_lattice(80.0)
    left = Structure(
        Lattice(right.lattice.matrix * np.array([[1], [1], [-1]])),
        right.species,
        right.frac_coords * np.array([1, 1, -1]),
    )
    docs = predict_structures([right, left])
    assert not any(isinstance(d, PredictionFailure) for d in docs), docs
    assert np.allclose(docs[0].dielectric_tensor, docs[1].dielectric_tensor, atol=1e-6)


def test_a_structure_file_longer_than_the_cap_is_refused_in_bounded_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(structures_io, "MAX_STRUCTURE_FILE_CHARS", 2**20)
    with gzip.open(tmp_path / "bomb.vasp.gz", "wb", compresslevel=1) as handle:
        handle.write(b"0" * (32 * 2**20))  # 32 MB once decompressed
    (tmp_path / "big.cif").write_text(crafted_cif(1) + "#" * 2**21 + "\n")
    records, peak = peak_bytes(lambda: read_structure_inputs([tmp_path]))
    assert [r.material_id for r in records] == ["big.cif", "bomb.vasp.gz"]
    for record in records:
        assert record.error.endswith(
            "the file holds more than 1048576 characters, more than is read from one structure file"
        )
    assert peak < 8 * 2**20

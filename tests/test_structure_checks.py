"""Impossible structures are reported before the model sees them, one record at a time."""

from __future__ import annotations

import gzip
import json
import warnings
from importlib import resources

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.candidates.sources import candidates_from_summary_docs, load_local
from anisoscreen.errors import AnisoscreenWarning
from anisoscreen.structure_checks import (
    MAX_VACUUM_GAP,
    check_structure,
    largest_vacuum_gaps,
    structure_error,
    structure_warnings,
)


def rocksalt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def zero_volume() -> Structure:
    return Structure(
        Lattice([[3, 0, 0], [0, 3, 0], [3, 3, 0]]), ["Si", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def too_close() -> Structure:
    return Structure(Lattice.cubic(5.0), ["Si", "Si"], [[0, 0, 0], [0.02, 0, 0]])  # 0.1 A


def one_cubic_angstrom_per_atom() -> Structure:
    return Structure(Lattice.cubic(2 ** (1 / 3)), ["Si", "Si"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def molecule_in_box() -> Structure:
    return Structure(Lattice.cubic(1000.0), ["O", "O"], [[0, 0, 0], [0.00121, 0, 0]])  # O2


def nan_coordinates() -> Structure:
    return Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [np.nan, 0.5, 0.5]])


def slab() -> Structure:
    bulk = rocksalt()
    return Structure(
        Lattice.tetragonal(4.2, 4.2 + 15.0),
        bulk.species,
        [[x, y, z * 4.2 / 19.2] for x, y, z in bulk.frac_coords],
    )


@pytest.mark.parametrize(
    ("build", "rule", "words"),
    [
        (zero_volume, "volume", "cell volume is 0"),
        (too_close, "distance", "0.10 Å apart"),
        (one_cubic_angstrom_per_atom, "volume", "1.00 Å³ per atom"),
        (molecule_in_box, "vacuum", "isolated molecule"),
        (nan_coordinates, "finite", "NaN or infinite"),
    ],
)
def test_impossible_structures_are_reported(build, rule, words):
    problems = check_structure(build())
    assert problems and problems[0].rule == rule and problems[0].severity == "error"
    assert words in problems[0].message
    assert "\n" not in structure_error(build())


def test_a_slab_in_a_box_is_a_warning_not_an_error():
    problems = check_structure(slab())
    assert [(p.rule, p.severity) for p in problems] == [("vacuum", "warning")]
    assert structure_error(slab()) is None
    assert len(structure_warnings(slab())) == 1 and "a slab" in structure_warnings(slab())[0]


def test_real_crystals_pass_including_layered_ones(shared_dir):
    assert check_structure(rocksalt()) == []
    raw = resources.files("anisoscreen.data").joinpath("bundled_candidates.json.gz").read_bytes()
    pool = [Structure.from_dict(d["structure"]) for d in json.loads(gzip.decompress(raw))]
    assert [structure_error(s) for s in pool] == [None] * len(pool)
    # layered crystals (MoS2-like) have interlayer gaps well under the vacuum threshold
    gaps = np.array([largest_vacuum_gaps(s).max() for s in pool])
    assert gaps.max() < MAX_VACUUM_GAP - 2.0


def test_a_bad_record_is_a_failure_and_the_source_goes_on(tmp_path):
    good = rocksalt()
    docs = [
        {"material_id": "mp-good-1", "structure": good.as_dict()},
        {"material_id": "zero", "structure": zero_volume().as_dict()},
        {"material_id": "close", "structure": too_close().as_dict()},
        {"material_id": "nan", "structure": nan_coordinates().as_dict()},
        {"material_id": "mp-good-2", "structure": good.copy().scale_lattice(80.0).as_dict()},
    ]
    batch = candidates_from_summary_docs(docs, source="test")
    assert [c.material_id for c in batch.candidates] == ["mp-good-1", "mp-good-2"]
    reasons = {f["material_id"]: f["error"] for f in batch.failures}
    assert set(reasons) == {"zero", "close", "nan"}
    assert "NaN" in reasons["nan"] and "no neighbour" not in reasons["nan"]
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(docs))
    assert len(load_local(path).failures) == 3


def test_duplicate_ids_in_a_source_are_reported_once(tmp_path):
    a, b = rocksalt(), rocksalt().scale_lattice(80.0)
    docs = [
        {"material_id": "mp-1", "structure": a.as_dict(), "band_gap": 1.0},
        {"material_id": "mp-1", "structure": b.as_dict(), "band_gap": 2.0},
        {"material_id": "mp-2", "structure": a.as_dict()},
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = candidates_from_summary_docs(docs, source="pool.json")
    messages = [str(w.message) for w in caught if issubclass(w.category, AnisoscreenWarning)]
    assert len(messages) == 1 and "1 material id(s) appear more than once (mp-1)" in messages[0]
    assert [(c.material_id, c.band_gap) for c in batch.candidates] == [
        ("mp-1", 2.0),
        ("mp-2", None),
    ]

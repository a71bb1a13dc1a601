"""Streaming readers of record files: JSON lists element by element, JSON Lines line by line."""

from __future__ import annotations

import gzip
import io
import json

import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen import structures_io
from anisoscreen.structures_io import iter_json_records, read_structure_inputs


@pytest.fixture
def documents() -> list[dict]:
    rock_salt = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rutile = Structure(
        Lattice.tetragonal(4.59, 2.96),
        ["Ti", "Ti", "O", "O", "O", "O"],
        [
            [0, 0, 0],
            [0.5, 0.5, 0.5],
            [0.3, 0.3, 0],
            [0.7, 0.7, 0],
            [0.8, 0.2, 0.5],
            [0.2, 0.8, 0.5],
        ],
    )
    return [
        {"material_id": "mp-1", "structure": rock_salt.as_dict(), "band_gap": 4.5},
        {"structure": rutile.as_dict()},
        {"material_id": "mp-3", "structure": rock_salt.as_dict(), "energy_above_hull": 0.1},
    ]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_json_list_is_decoded_element_by_element(documents, tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(structures_io, "_READ_CHARS", chunk)
    path = tmp_path / "pool.json.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("  \n" + json.dumps(documents, indent=1) + "\n")
    records = list(iter_json_records(path))
    assert [r.material_id for r in records] == ["mp-1", "pool.json.gz#1", "mp-3"]
    assert [r.explicit_id for r in records] == [True, False, True]
    assert [r.formula for r in records] == ["MgO", "TiO2", "MgO"]
    assert records[0].fields == {"band_gap": 4.5}
    assert records[2].fields == {"energy_above_hull": 0.1}


def test_json_list_values_match_json_loads(monkeypatch):
    monkeypatch.setattr(structures_io, "_READ_CHARS", 2)
    for text in ["[]", " [ 1 , 2,3 ] ", '[{"a": [1, 2]}, 12345678901234567890, "x]"]']:
        assert list(structures_io._iter_json_values(io.StringIO(text))) == json.loads(text)


def test_one_object_is_one_record_and_bad_json_ends_the_file(documents, tmp_path):
    single = tmp_path / "one.json"
    single.write_text(json.dumps(documents[0]))
    assert [r.material_id for r in iter_json_records(single)] == ["mp-1"]

    scalar = tmp_path / "scalar.json"
    scalar.write_text("5")
    (record,) = iter_json_records(scalar)
    assert record.structure is None and record.error == "JSON must hold a list of objects"

    truncated = tmp_path / "cut.json"
    truncated.write_text(json.dumps(documents)[:-40])
    records = list(iter_json_records(truncated))
    assert [r.material_id for r in records[:2]] == ["mp-1", "cut.json#1"]
    assert records[-1].structure is None and records[-1].error.startswith("unreadable JSON")


def test_json_lines_are_read_line_by_line_and_a_bad_line_is_one_failure(documents, tmp_path):
    path = tmp_path / "pool.jsonl.gz"
    lines = [json.dumps(documents[0]), "{not json", "", json.dumps(documents[1]), '{"x": 1}']
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    records = list(read_structure_inputs([tmp_path]))  # a folder finds .jsonl.gz files too
    assert [r.material_id for r in records] == [
        "mp-1",
        "pool.jsonl.gz#2",
        "pool.jsonl.gz#4",
        "pool.jsonl.gz#5",
    ]
    assert records[1].error.startswith("unreadable JSON")
    assert records[2].formula == "TiO2"
    assert records[3].error == "record has no 'structure'"


def _variety() -> list[Structure]:
    """Structures a source may hold: plain elements, and every case the fast path leaves."""
    plain = Structure(
        Lattice.from_parameters(3.1, 4.2, 5.3, 80, 95, 110),
        ["Mg", "O", "O", "Si"],
        [[0, 0, 0], [0.25, 0.5, 0.1], [0.7, 0.2, 0.9], [0.5, 0.5, 0.5]],
        labels=["Mg1", None, "O2", None],
    )
    charged = plain.copy()
    charged.add_oxidation_state_by_element({"Mg": 2, "O": -2, "Si": 4})
    disordered = plain.copy()
    disordered.replace(0, {"Mg": 0.5, "Fe": 0.5})
    with_sites = plain.copy()
    with_sites.add_site_property("magmom", [0.5, 0.0, 0.0, 1.0])
    with_props = plain.copy()
    with_props.properties = {"note": "x", "energy": -1.5}
    left = Structure(
        plain.lattice.matrix[[1, 0, 2]], plain.species, plain.frac_coords[:, [1, 0, 2]]
    )
    return [plain, charged, disordered, with_sites, with_props, left]


@pytest.mark.parametrize("index", range(6))
def test_structure_from_dict_is_pymatgens_from_dict_made_right_handed(index):
    from anisoscreen.handedness import right_handed
    from anisoscreen.structures_io import structure_from_dict

    data = _variety()[index].as_dict()
    expected = right_handed(Structure.from_dict(json.loads(json.dumps(data))))
    got = structure_from_dict(json.loads(json.dumps(data)))
    assert got.lattice.matrix.tobytes() == expected.lattice.matrix.tobytes()
    assert got.frac_coords.tobytes() == expected.frac_coords.tobytes()
    assert [s.species for s in got] == [s.species for s in expected]
    assert got.labels == expected.labels
    assert got.site_properties == expected.site_properties
    assert got.properties == expected.properties
    assert got.charge == expected.charge
    assert got.lattice.volume > 0


def test_structure_from_dict_keeps_pymatgens_errors():
    from anisoscreen.structures_io import structure_from_dict

    data = _variety()[0].as_dict()
    data["sites"][1]["species"] = [{"element": "Xx", "occu": 1}]
    with pytest.raises(ValueError, match="Xx"):
        structure_from_dict(data)
    data = _variety()[0].as_dict()
    data["sites"][1]["species"] = [{"element": "O", "occu": 0.8}, {"element": "N", "occu": 0.7}]
    with pytest.raises(ValueError, match="more than 1"):
        structure_from_dict(data)


@pytest.mark.parametrize("index", range(6))
def test_structure_dict_is_the_sanitised_as_dict_key_for_key(index):
    from monty.json import jsanitize

    from anisoscreen.schemas import structure_dict

    structure = _variety()[index]
    expected = jsanitize(structure.as_dict(), strict=True, allow_bson=True)
    assert json.dumps(structure_dict(structure)) == json.dumps(expected)  # order included
    _, first, second = structure_dict(structure)["sites"][:3]  # two oxygen sites
    first["species"][0]["occu"] = 0.25  # entries are not shared between sites
    assert second["species"][0]["occu"] == 1


def test_both_fast_paths_equal_pymatgen_on_the_bundled_pool():
    from monty.json import jsanitize

    from anisoscreen.candidates.sources import load_bundled
    from anisoscreen.handedness import right_handed
    from anisoscreen.schemas import structure_dict
    from anisoscreen.structures_io import structure_from_dict

    structures = [c.structure for c in load_bundled().candidates]
    assert len(structures) >= 300
    for structure in structures:
        data = jsanitize(structure.as_dict(), strict=True, allow_bson=True)
        assert json.dumps(structure_dict(structure)) == json.dumps(data)
        got, expected = structure_from_dict(data), right_handed(Structure.from_dict(data))
        assert got.lattice.matrix.tobytes() == expected.lattice.matrix.tobytes()
        assert got.frac_coords.tobytes() == expected.frac_coords.tobytes()
        assert [s.species for s in got] == [s.species for s in expected]
        assert got.labels == expected.labels

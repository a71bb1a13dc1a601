"""One id rule for file inputs: ``predict``, ``predict_structures`` and ``run-screen --source``.

A file's id is its name, or its path relative to the folder given when two files below it
share that name; only a Structure object (no file) gets the structure hash.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run_cli

from anisoscreen.candidates.sources import load_bundled, load_local
from anisoscreen.schemas import structure_id
from anisoscreen.structures_io import as_records, file_ids, read_structure_inputs

EXPECTED = ["a/x.cif", "b/x.cif", "y.cif"]


@pytest.fixture
def nested(tmp_path) -> Path:
    """``a/x.cif``, ``b/x.cif`` (same name, different structures) and ``y.cif``."""
    folder = tmp_path / "inputs"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
    candidates = load_bundled().candidates[:3]
    for candidate, name in zip(candidates, EXPECTED, strict=True):
        candidate.structure.to(filename=str(folder / name))
    return folder


def test_file_ids_are_names_or_relative_paths_when_names_repeat(tmp_path):
    files = [tmp_path / "a" / "x.cif", tmp_path / "b" / "x.cif", tmp_path / "b" / "z.vasp"]
    assert list(file_ids(tmp_path, files).values()) == ["a/x.cif", "b/x.cif", "z.vasp"]


def test_readers_and_the_folder_source_share_the_ids(nested):
    assert [r.material_id for r in read_structure_inputs([nested])] == EXPECTED
    # run-screen --source FOLDER: the candidates keep the file ids (no structure hashes)
    assert sorted(c.material_id for c in load_local(nested).candidates) == EXPECTED
    # the Python API's inputs: paths read the same way; a Structure object gets its hash
    structure = load_bundled().candidates[5].structure
    records = list(as_records([nested, nested / "y.cif", structure]))
    assert [r.material_id for r in records] == [*EXPECTED, "y.cif", structure_id(structure)]


def test_json_records_without_an_id_are_named_after_the_file_id(tmp_path):
    structure = load_bundled().candidates[0].structure
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "pool.json").write_text(
            json.dumps(
                [
                    {"structure": structure.as_dict()},
                    {"material_id": "mp-9", "structure": structure.as_dict()},
                ]
            )
        )
    ids = [r.material_id for r in read_structure_inputs([tmp_path])]
    assert ids == ["a/pool.json#0", "mp-9", "b/pool.json#0", "mp-9"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    return run_cli(*args, env=env, timeout=600)


@pytest.mark.slow
def test_predict_the_api_and_run_screen_give_the_same_ids(nested, tmp_path):
    from anisoscreen.model.inference import predict_structures
    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore

    out = _cli("predict", str(nested), "-o", str(tmp_path / "p.jsonl"), "--device", "cpu")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    from_predict = sorted(json.loads(line)["material_id"] for line in lines)

    from_api = sorted(d.material_id for d in predict_structures([nested], device="cpu"))

    data_dir = tmp_path / "d"
    out = _cli(
        "run-screen", "--source", str(nested), "--include-known", "--data-dir", str(data_dir)
    )
    assert out.returncode == 0, out.stdout + out.stderr
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        from_screen = sorted(d.material_id for d in results.query(PredictionDoc))

    assert from_predict == from_api == from_screen == EXPECTED

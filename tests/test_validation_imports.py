"""Existing DFT imported as validations: provenance, training-split marks, accuracy figures."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import CLI
from conftest import SHARED, TEST_DATA

from anisoscreen.errors import SourceError
from anisoscreen.query import join_validations
from anisoscreen.report.figures import plot_parity
from anisoscreen.schemas import Dimensionality, PredictionDoc, ValidationState
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore
from anisoscreen.validation.imports import (
    MP_SET_SOURCE,
    bundled_validations,
    import_validations,
    mark_training,
    training_split_ids,
)

ALN_EPS = [[4.372, 0.0, 0.0], [0.0, 4.372, 0.0], [0.0, 0.0, 4.573]]
ALN_ION = [[3.9, 0.0, 0.0], [0.0, 3.9, 0.0], [0.0, 0.0, 4.6]]


def _write(path, records):
    with gzip.open(path, "wt") as handle:
        json.dump(records, handle)
    return path


def _prediction(material_id: str, scale: float = 1.0) -> PredictionDoc:
    return PredictionDoc.from_tensor(
        np.asarray(ALN_EPS) * scale,
        material_id=material_id,
        formula_pretty="AlN",
        model="m1",
        model_version="1.0",
        model_checksum="abc",
        dimensionality=Dimensionality.THREE_D,
    )


def test_mp_set_records_are_imported_with_provenance(tmp_path):
    path = _write(
        tmp_path / "set.json.gz",
        [
            {
                "material_id": "mp-661",
                "formula": "AlN",
                "eps_electronic": ALN_EPS,
                "eps_ionic": ALN_ION,
                "source": "MP DFPT",
            },
            {
                "material_id": "mp-2",
                "formula": "X",
                "eps_electronic": [[0.5, 0, 0], [0, 1, 0], [0, 0, 1]],
            },
        ],
    )
    docs = import_validations(path)
    aln, bad = docs
    assert aln.imported_from == MP_SET_SOURCE and aln.source_task_id == "mp-661"
    assert aln.job_uuid == f"import:{MP_SET_SOURCE}:mp-661"  # a re-import replaces
    assert aln.state == ValidationState.COMPLETED and aln.is_valid
    assert aln.anisotropy_ratio == pytest.approx(4.573 / 4.372)
    np.testing.assert_allclose(aln.epsilon_total, np.add(ALN_EPS, ALN_ION))
    assert bad.state == ValidationState.FLAGGED and "eigenvalue" in bad.flags[0]
    assert [d.material_id for d in import_validations(path, ids=["mp-2"])] == ["mp-2"]


def test_mp_dielectric_docs_export_is_read(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "material_id": "mp-661",
                        "formula_pretty": "AlN",
                        "electronic": ALN_EPS,
                        "ionic": ALN_ION,
                        "total": ALN_EPS,
                    }
                ]
            }
        )
    )
    (doc,) = import_validations(path)
    assert doc.imported_from == "Materials Project dielectric documents"
    assert doc.eps_poly == pytest.approx(np.trace(ALN_EPS) / 3)


def test_wrong_sources_fail_as_source_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        import_validations(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(SourceError, match="not a JSON list"):
        import_validations(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('[{"material_id": "mp-1", "foo": 1}]')
    with pytest.raises(SourceError, match="not a DielectricDoc"):
        import_validations(tmp_path / "y.json")


@pytest.mark.slow
def test_vasp_folder_is_parsed_by_atomate2(tmp_path):
    import shutil

    run = tmp_path / "runs" / "AlN"
    run.mkdir(parents=True)
    shutil.copy(TEST_DATA / "vasp" / "AlN_dfpt_vasprun.xml.gz", run / "AlN_dfpt_vasprun.xml.gz")
    shutil.copy(TEST_DATA / "vasp" / "AlN_dfpt_OUTCAR.gz", run / "AlN_dfpt_OUTCAR.gz")
    (doc,) = import_validations(tmp_path / "runs")
    assert doc.imported_from == "VASP outputs in runs" and doc.source_task_id == "AlN/AlN_dfpt"
    assert doc.is_valid and doc.formula_pretty == "AlN"
    np.testing.assert_allclose(
        np.diag(doc.epsilon_electronic), [4.37234871, 4.37234994, 4.57297469], atol=1e-7
    )
    assert doc.input_settings["incar"]["ENCUT"] == 850  # what the run used, not a default


def test_training_materials_are_marked_and_left_out_of_parity(tmp_path):
    path = _write(
        tmp_path / "set.json.gz",
        [{"material_id": f"mp-{i}", "formula": "AlN", "eps_electronic": ALN_EPS} for i in range(3)],
    )
    docs = mark_training(import_validations(path), {"m1": {"mp-0", "mp-1"}})
    assert [d.in_training_split for d in docs] == [["m1"], ["m1"], []]
    settings = get_settings(store="memory", data_dir=tmp_path)
    with ResultsStore(settings) as results:
        results.upsert([_prediction(f"mp-{i}", 1.1) for i in range(3)])
        results.upsert(docs)
        rows = join_validations(results.query(PredictionDoc, {}), results.query(type(docs[0]), {}))
    assert sum(r.in_training_split for r in rows) == 2
    figure = plot_parity(rows)
    assert "n = 1" in " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    figure = plot_parity(rows, include_training=True)
    assert "n = 3" in " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    with pytest.raises(Exception, match="training split"):
        plot_parity([r for r in rows if r.in_training_split])


@pytest.mark.skipif(
    not (SHARED / "data" / "mp_dielectric_tensors.json.gz").is_file(),
    reason="needs the shared MP DFPT set",
)
def test_training_split_is_rebuilt_from_the_shipped_model_metrics():
    from anisoscreen.model.checkpoint import resolve_model_path

    folder = resolve_model_path("anisonet-mp-v2").parent
    ids = training_split_ids(folder, SHARED)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (
        len(ids) == metrics["split_sizes"]["train"] - 1
        or len(ids) == metrics["split_sizes"]["train"]
    )  # one id appears twice (two polymorph cells)


def test_bundled_demo_results_hold_high_ar_and_held_out_materials():
    docs = bundled_validations()
    with gzip.open(
        __import__("importlib.resources").resources.files("anisoscreen.data")
        / "bundled_candidates.json.gz",
        "rt",
    ) as handle:
        pool = {d["material_id"] for d in json.load(handle)}
    assert len(pool) == 300
    assert docs and all(d.material_id in pool and d.imported_from == MP_SET_SOURCE for d in docs)
    held_out = [d for d in docs if not d.in_training_split and d.is_valid]
    assert len(held_out) >= 10  # the demo's parity plot has honest points


def test_missing_source_is_reported_fast_with_the_source_exit_code(tmp_path):
    code = CLI
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, "validations", "import", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 6 and "not found" in out.stderr
    assert time.perf_counter() - start < 5  # no torch, pymatgen or atomate2 imported first

"""TaskDoc → ValidationDoc: numbers from a real AlN DFPT TaskDoc, and the flags."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from anisoscreen.schemas import ValidationDoc, ValidationState
from anisoscreen.tensor import absorption_coefficient, voigt6_to_tensors
from anisoscreen.validation.parse import optics_from_dielectric, validation_doc_from_task

ALN_DIAG = [4.37234871, 4.37234994, 4.57297469]


@pytest.fixture(scope="module")
def aln_task(tmp_path_factory):
    """emmet TaskDoc parsed by atomate2 from the real AlN LEPSILON outputs, serialised."""
    import shutil
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from atomate2.vasp.jobs.base import get_vasp_task_document
    from conftest import TEST_DATA
    from pymatgen.io.vasp import Poscar
    from vasp_refs import structure_of

    vasp = TEST_DATA / "vasp"
    run = tmp_path_factory.mktemp("aln")
    shutil.copy(vasp / "AlN_dfpt_vasprun.xml.gz", run / "vasprun.xml.gz")
    shutil.copy(vasp / "AlN_dfpt_OUTCAR.gz", run / "OUTCAR.gz")
    Poscar(structure_of(vasp / "AlN_dfpt_vasprun.xml.gz")).write_file(run / "CONTCAR")
    from monty.json import jsanitize

    # the form a jobflow JobStore hands back: plain JSON, enums as values
    return jsanitize(get_vasp_task_document(run), strict=True, enum_values=True)


def _doc(task, **kw):
    return validation_doc_from_task(task, material_id="mp-661", job_uuid="u1", **kw)


def test_real_taskdoc_gives_the_aln_tensor(aln_task):
    doc = _doc(aln_task)
    assert doc.state == ValidationState.COMPLETED and doc.flags == []
    assert doc.formula_pretty == "AlN"
    np.testing.assert_allclose(np.diag(doc.epsilon_electronic), ALN_DIAG, atol=1e-7)
    assert doc.anisotropy_ratio == pytest.approx(4.57297469 / 4.37234871, rel=1e-7)
    assert doc.input_settings["incar"]["ENCUT"] == 850  # what the reference run used
    assert doc.input_settings["kpoints"]["kpts"] == [[9, 9, 5]]
    # the record round-trips through the store representation
    again = ValidationDoc.from_store(doc.store_dict())
    assert again.epsilon_electronic == doc.epsilon_electronic


def test_unconverged_run_is_flagged(aln_task):
    task = copy.deepcopy(aln_task)
    task["state"] = "failed"
    task["calcs_reversed"][0]["has_vasp_completed"] = "failed"
    doc = _doc(task)
    assert doc.state == ValidationState.FLAGGED and not doc.is_valid
    assert doc.converged is False
    assert any("not converged" in f for f in doc.flags)
    # the numbers are kept for inspection, but the record is not valid
    np.testing.assert_allclose(np.diag(doc.epsilon_electronic), ALN_DIAG, atol=1e-7)


def test_non_symmetric_tensor_is_flagged(aln_task):
    task = copy.deepcopy(aln_task)
    task["calcs_reversed"][0]["output"]["epsilon_static"][0][1] = 0.5
    doc = _doc(task)
    assert doc.state == ValidationState.FLAGGED
    assert any("epsilon_static" in f and "not symmetric" in f for f in doc.flags)
    assert doc.epsilon_electronic is None and doc.anisotropy_ratio is None


def test_eigenvalue_below_one_is_flagged(aln_task):
    task = copy.deepcopy(aln_task)
    task["calcs_reversed"][0]["output"]["epsilon_static"] = np.diag([0.8, 4.0, 4.0]).tolist()
    doc = _doc(task)
    assert doc.state == ValidationState.FLAGGED
    assert any("below 1" in f for f in doc.flags)


def test_missing_tensor_is_flagged(aln_task):
    task = copy.deepcopy(aln_task)
    task["calcs_reversed"][0]["output"]["epsilon_static"] = None
    doc = _doc(task)
    assert doc.state == ValidationState.FLAGGED
    assert doc.flags == ["epsilon_static missing from the VASP output"]
    task["calcs_reversed"][0]["output"]["frequency_dependent_dielectric"] = None
    doc = _doc(task, calc_type="optics")
    assert doc.flags == ["frequency_dependent_dielectric missing from the VASP output"]


def test_voigt_order_and_absorption():
    t = voigt6_to_tensors([[1, 2, 3, 4, 5, 6]])[0]
    assert t.tolist() == [[1, 4, 6], [4, 2, 5], [6, 5, 3]]
    # eps = -1 + 0i: kappa = 1, alpha = 2 E / hbar c
    assert absorption_coefficient(1.0, -1.0, 0.0) == pytest.approx(2 / 1.973269804e-5)
    assert absorption_coefficient(1.0, 4.0, 0.0) == 0.0
    fdd = {
        "energy": [0.0, 1.0],
        "real": [[2, 3, 4, 0, 0, 0]] * 2,
        "imaginary": [[0] * 6, [0, 0, 1, 0, 0, 0]],
    }
    eps0, optics = optics_from_dielectric(fdd)
    assert np.diag(eps0).tolist() == [2, 3, 4]
    assert np.array(optics["principal_axes"]) == pytest.approx(np.eye(3))
    assert optics["principal_eps_imag"][2] == [0.0, 1.0]
    assert optics["principal_eps_imag"][0] == [0.0, 0.0]
    assert optics["eps_imag"][1] == [0, 0, 1, 0, 0, 0]  # raw rows kept for the report module

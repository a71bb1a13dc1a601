"""Validation flows run end to end through atomate2 with its VASP mock and real outputs.

The DFPT reference is a real AlN LEPSILON run (ε∞ diag 4.372 / 4.372 / 4.573); the optics
reference is a real Cs2SnI6 LOPTICS run. The mock checks that anisoscreen writes MP inputs
(PBE, 520 eV, EDIFF 1e-5...) and copies the real outputs, which atomate2 then parses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
TEST_DATA = Path(__file__).parent / "data"

from vasp_refs import (  # noqa: E402
    CS2SNI6_MESH,
    DFPT_CHECKED,
    OPTICS_CHECKED,
    OPTICS_INCAR,
    STATIC_CHECKED,
    STATIC_INCAR,
    aln_dfpt_ref,
    make_ref_dir,
    structure_of,
)

pytestmark = pytest.mark.filterwarnings("ignore")

ALN_EPS = np.diag([4.37234871, 4.37234994, 4.57297469])


@pytest.fixture
def mock_vasp(monkeypatch):
    from atomate2.utils.testing.vasp import monkeypatch_vasp

    yield from monkeypatch_vasp(monkeypatch, Path("/"))


def _run(flow, memory_settings, tmp_path):
    from jobflow import run_locally

    from anisoscreen.store import build_job_store

    job_store = build_job_store(memory_settings)
    responses = run_locally(
        flow, store=job_store, create_folders=True, root_dir=tmp_path / "run", ensure_success=True
    )
    return job_store, responses


def test_dfpt_validation_flow_aln(mock_vasp, tmp_path, memory_settings, memory_results):
    from anisoscreen.schemas import PredictionDoc, ValidationDoc, ValidationState
    from anisoscreen.validation.makers import ValidationMaker, collect_from_job_store

    ref, structure = aln_dfpt_ref(TEST_DATA, tmp_path / "refs")
    mock_vasp({"mp dielectric": ref}, {"mp dielectric": {"incar_settings": DFPT_CHECKED}})
    prediction = PredictionDoc.from_tensor(
        np.diag([4.2, 4.2, 4.5]),
        material_id="mp-661",
        formula_pretty="AlN",
        model="anisonet",
        model_version="1",
        model_checksum="0" * 64,
    )
    flow = ValidationMaker().make(structure, material_id="mp-661", prediction=prediction)
    job_store, responses = _run(flow, memory_settings, tmp_path)

    dfpt_job = flow.jobs[0]
    assert dfpt_job.name == "mp dielectric"
    assert collect_from_job_store(job_store, memory_results) == 1
    (doc,) = memory_results.query(ValidationDoc, {"material_id": "mp-661"})
    assert doc.state == ValidationState.COMPLETED and doc.flags == [] and doc.is_valid
    assert doc.job_uuid == dfpt_job.uuid and doc.flow_uuid == flow.uuid
    np.testing.assert_allclose(doc.epsilon_electronic, ALN_EPS, atol=1e-6)
    np.testing.assert_allclose(doc.eigenvalues, [4.37234871, 4.37234994, 4.57297469], atol=1e-6)
    assert doc.anisotropy_ratio == pytest.approx(4.57297469 / 4.37234871, rel=1e-6)
    assert doc.anisotropy_ratio == pytest.approx(1.045885, abs=1e-5)
    assert doc.eps_poly == pytest.approx((2 * 4.3723493 + 4.5729747) / 3, rel=1e-6)
    np.testing.assert_allclose(
        np.diag(doc.epsilon_ionic), [3.730538, 3.730524, 4.975822], atol=1e-5
    )
    np.testing.assert_allclose(
        np.diag(doc.epsilon_total), [8.102887, 8.102874, 9.548797], atol=1e-5
    )
    # the c axis (z) is the principal axis of the largest eigenvalue
    assert abs(doc.principal_axes[2][2]) == pytest.approx(1.0, abs=1e-6)
    # link to the prediction and the inputs requested / actually run
    assert doc.prediction_model == "anisonet"
    assert doc.predicted_anisotropy_ratio == pytest.approx(4.5 / 4.2)
    ar = 4.57297469 / 4.37234871
    assert doc.anisotropy_ratio_error == pytest.approx((4.5 / 4.2 - ar) / ar, rel=1e-6)
    requested = doc.input_settings["requested"]
    assert requested["encut"] == 520 and requested["potcar_functional"] == "PBE"
    assert requested["reciprocal_density"] == 200 and requested["ediff"] == 1e-5
    assert doc.input_settings["incar"]["LEPSILON"] is True
    assert doc.converged is True
    # the flow's record job ran after the VASP job and returned the same document
    assert len(responses) == 2


def test_dfpt_inputs_are_mp_compatible_and_overridable():
    from anisoscreen.validation.makers import MPDielectricMaker
    from anisoscreen.validation.sets import MPDielectricSetGenerator

    structure = structure_of(TEST_DATA / "vasp/AlN_dfpt_vasprun.xml.gz")
    vasp_input = MPDielectricMaker().input_set_generator.get_input_set(structure, potcar_spec=True)
    incar = vasp_input["INCAR"]
    assert incar["ENCUT"] == 520 and incar["EDIFF"] == 1e-5 and incar["LEPSILON"] is True
    assert incar["IBRION"] == 8 and "GGA" not in incar  # PBE, not atomate2's PBEsol
    assert vasp_input["POTCAR.spec"].split() == ["Al", "N"]
    # 200 k-points per A^-3 of reciprocal volume: 12x12x7 for AlN (MP static: 100)
    assert list(vasp_input["KPOINTS"].kpts[0]) == [12, 12, 7]
    custom = MPDielectricSetGenerator(
        reciprocal_density=100, ediff=1e-6, user_incar_settings={"ENCUT": 600}
    ).get_input_set(structure, potcar_spec=True)
    assert custom["INCAR"]["ENCUT"] == 600 and custom["INCAR"]["EDIFF"] == 1e-6
    assert list(custom["KPOINTS"].kpts[0]) != [12, 12, 7]


def test_optics_validation_flow_cs2sni6(
    mock_vasp, shared_dir, tmp_path, memory_settings, memory_results
):
    from anisoscreen.schemas import ValidationDoc, ValidationState
    from anisoscreen.validation.makers import MPOpticsMaker, ValidationMaker, collect_from_job_store

    vasprun = shared_dir / "data/vasp/Cs2SnI6_optics_vasprun.xml.gz"
    structure = structure_of(vasprun)
    potcars = ["Cs_sv", "Sn_d", "I"]
    outcar = Path(__file__).parent / "fixtures" / "OUTCAR_cs2sni6_stub"
    static_ref = make_ref_dir(
        tmp_path / "refs",
        "static",
        structure,
        STATIC_INCAR,
        potcars,
        {"vasprun.xml.gz": vasprun, "OUTCAR": outcar, "CHGCAR": "fake charge density\n"},
        kpoints=CS2SNI6_MESH,
    )
    optics_ref = make_ref_dir(
        tmp_path / "refs",
        "optics",
        structure,
        OPTICS_INCAR,
        potcars,
        {"vasprun.xml.gz": vasprun, "OUTCAR": outcar},
        kpoints=CS2SNI6_MESH,
    )
    mock_vasp(
        {"mp optics static": static_ref, "mp optics": optics_ref},
        {
            "mp optics static": {"incar_settings": STATIC_CHECKED, "clear_inputs": False},
            "mp optics": {"incar_settings": OPTICS_CHECKED, "clear_inputs": False},
        },
    )
    maker = ValidationMaker(dielectric_maker=None, optics_maker=MPOpticsMaker())
    flow = maker.make(structure, material_id="mp-optics")
    job_store, _ = _run(flow, memory_settings, tmp_path)
    assert collect_from_job_store(job_store, memory_results) == 1
    (doc,) = memory_results.query(ValidationDoc, {"calc_type": "optics"})
    optics = doc.optics
    energy = np.array(optics["energies"])
    assert len(energy) == 2000 and energy[0] == 0.0
    eps_real = np.array(optics["principal_eps_real"])
    eps_imag = np.array(optics["principal_eps_imag"])
    assert np.array(optics["eps_real"]).shape == (2000, 6)  # VASP's xx yy zz xy yz zx rows
    absorption = np.array(optics["absorption"])
    assert eps_real.shape == eps_imag.shape == absorption.shape == (3, 2000)
    # the omega -> 0 real part of the real LOPTICS run (XX YY ZZ XY YZ ZX = 3.8386 3.9
    # 3.3281 0.3439 -0.2696 0.2796; a distorted R-3m cell, so anisotropic) is eps_inf
    eps0 = np.array([[3.8386, 0.3439, 0.2796], [0.3439, 3.9, -0.2696], [0.2796, -0.2696, 3.3281]])
    assert doc.state == ValidationState.COMPLETED, doc.flags
    np.testing.assert_allclose(doc.epsilon_electronic, eps0, atol=1e-9)
    np.testing.assert_allclose(doc.eigenvalues, np.linalg.eigvalsh(eps0), atol=1e-9)
    assert doc.anisotropy_ratio == pytest.approx(1.393035, abs=1e-6)
    # spectra along the principal axes start at the principal values
    assert eps_real[:, 0] == pytest.approx(doc.eigenvalues, abs=1e-9)
    assert doc.eigenvalues[0] > 1.0
    # absorption vanishes below the gap and rises above it
    assert absorption[:, 0] == pytest.approx([0, 0, 0], abs=1e-6)
    assert absorption.max() > 1e4
    hi = int(np.argmax(absorption[0]))
    n_k = np.sqrt((np.hypot(eps_real[0, hi], eps_imag[0, hi]) - eps_real[0, hi]) / 2)
    assert absorption[0, hi] == pytest.approx(2 * energy[hi] * n_k / 1.973269804e-5, rel=1e-9)
    assert doc.input_settings["requested"]["optics"] is True
    assert doc.input_settings["requested"]["mode"] == "uniform"

    # the report module reads the same record (its own projection and absorption formula)
    from anisoscreen.report.optics import optics_spectrum, project
    from anisoscreen.tensor import absorption_coefficient

    spectrum = optics_spectrum(doc)
    axes = np.array(optics["principal_axes"]).T
    along = project(spectrum.eps_real, axes).T
    np.testing.assert_allclose(along, eps_real, atol=1e-9)
    alpha = absorption_coefficient(
        spectrum.energies, along[0], project(spectrum.eps_imag, axes)[:, 0]
    )
    np.testing.assert_allclose(alpha, absorption[0], rtol=1e-6, atol=1e-6)

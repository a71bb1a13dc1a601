"""Optics end to end: predict's lines, run-screen --objective birefringence, query -f json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from jobflow import run_locally
from typer.testing import CliRunner

from anisoscreen import tensor as tmath
from anisoscreen.cli import app
from anisoscreen.schemas import PredictionDoc
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, build_job_store

sys.path.insert(0, str(Path(__file__).parent))

import crystals  # noqa: E402
from model_sets import model_file, write_pool  # noqa: E402
from screening_helpers import local_maker  # noqa: E402


@pytest.fixture(scope="module")
def electronic_model(tmp_path_factory) -> Path:
    """A small untrained two-member electronic ensemble (what the plumbing needs)."""
    return model_file(
        tmp_path_factory.mktemp("optics-model") / "electronic.pt", "electronic", "mean"
    )


def test_predict_lines_carry_the_optics(tmp_path):
    # 2H-MoS2, a hexagonal (uniaxial) structure, with the shipped model: the optic axis must come out as the c axis [0, 0, 1]
    structure = crystals.mos2()
    cif = tmp_path / "mos2.cif"
    structure.to(filename=str(cif))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["predict", str(cif), "-o", str(out), "--model", "anisonet-mp-v1", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = json.loads(out.read_text().splitlines()[0])
    n = np.sqrt(np.linalg.eigvalsh(np.array(line["dielectric_tensor"])))
    np.testing.assert_allclose(line["refractive_indices"], n, atol=1e-5)
    assert line["birefringence"] == pytest.approx(n[-1] - n[0], abs=1e-5)
    assert line["optical_character"].startswith("uniaxial")
    np.testing.assert_allclose(line["optic_axes"], [[0, 0, 1]], atol=1e-3)
    assert line["lattice_parameters"]["c"] == pytest.approx(12.3)
    assert line["birefringence_std"] > 0 and line["n_models"] > 1


@pytest.fixture(scope="module")
def birefringence_screening(electronic_model, tmp_path_factory):
    """``run-screen --objective birefringence`` (as a flow) on the recorded pool."""
    tmp_path = tmp_path_factory.mktemp("dn")
    pool = write_pool(tmp_path / "pool.json")
    settings = get_settings(data_dir=tmp_path / "d")
    maker = local_maker(electronic_model, pool, tmp_path / "d", objective="birefringence")
    assert maker.prediction_maker.ionic_model is None  # dn is a property of eps_inf alone
    flow = maker.make("dn-1")
    responses = run_locally(flow, store=build_job_store(settings), create_folders=False, log=False)
    return tmp_path / "d", responses[flow.jobs[2].uuid][1].output


def test_screening_ranks_by_birefringence(birefringence_screening):
    data_dir, ranking = birefringence_screening
    values = [row.objective_value for row in ranking.ranking]
    assert ranking.objective == "birefringence" and len(values) > 5
    assert values == sorted(values, reverse=True) and None not in values
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        preds = {p.material_id: p for p in results.query(PredictionDoc)}
    for row in ranking.ranking:
        doc = preds[row.material_id]
        expected = float(tmath.birefringence(doc.dielectric_tensor))
        assert row.birefringence == doc.birefringence == pytest.approx(expected, abs=1e-5)
        assert doc.space_group_number is not None and 1 <= doc.space_group_number <= 230
        assert row.space_group_symbol == doc.space_group_symbol
        assert set(doc.lattice_parameters) == {"a", "b", "c", "alpha", "beta", "gamma"}


def test_query_sorts_filters_and_prints_tensors_with_spread(birefringence_screening):
    data_dir, ranking = birefringence_screening
    cutoff = ranking.ranking[2].birefringence
    out = CliRunner().invoke(
        app, ["query", "--data-dir", str(data_dir), "--sort", "birefringence", "--dn-min",
              str(cutoff), "-f", "json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    records = json.loads(out.output)
    assert [r["material_id"] for r in records] == [r.material_id for r in ranking.ranking[:3]]
    for record in records:
        assert np.array(record["predicted_dielectric_tensor"]).shape == (3, 3)
        assert np.array(record["predicted_dielectric_tensor_std"]).shape == (3, 3)
        assert record["predicted_birefringence_std"] >= 0
        assert len(record["refractive_indices"]) == 3 and record["optical_character"]
        assert record["space_group_symbol"]
    table = CliRunner().invoke(
        app, ["table", "--data-dir", str(data_dir), "--include-predictions", "-c",
              "optics,symmetry", "-f", "csv", "--sort", "birefringence", "--limit", "3"],
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    header, first = table.output.splitlines()[:2]
    cells = dict(zip(header.split(","), first.split(","), strict=False))
    assert float(cells["birefringence"]) == pytest.approx(
        ranking.ranking[0].birefringence, abs=1e-3
    )


def test_campaign_objective_birefringence():
    from anisoscreen.screening.objectives import OBJECTIVES
    from anisoscreen.screening.objectives import tensor_values as objective_values

    assert "birefringence" in OBJECTIVES
    tensors = np.stack([np.diag([4.0, 4.0, 9.0]), np.eye(3) * 2.0, np.diag([1.0, 4.0, 16.0])])
    np.testing.assert_allclose(objective_values(tensors, "birefringence"), [1.0, 0.0, 3.0])
    # a member with a non-positive eigenvalue still gets a (floored) value, as a_r does
    assert np.isfinite(objective_values(np.diag([-1.0, 4.0, 9.0]), "birefringence"))

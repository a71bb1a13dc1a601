"""Model sets (electronic + ionic) in predict and the screening; high-kappa objectives."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from jobflow import run_locally
from typer.testing import CliRunner

from anisoscreen.candidates.filters import ScreeningCriteria
from anisoscreen.cli import app
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.inference import Predictor, predict_structures
from anisoscreen.schemas import PredictionDoc, ScreeningRunDoc, ValidationDoc, ValidationState
from anisoscreen.screening.flows import RankingMaker, ScreeningMaker
from anisoscreen.screening.objectives import objective_value
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, build_job_store
from anisoscreen.structures_io import StructureRecord

sys.path.insert(0, str(Path(__file__).parent))

from model_sets import pool_docs, write_pool  # noqa: E402
from screening_helpers import local_maker  # noqa: E402


def test_total_is_electronic_plus_ionic_exactly_with_spreads(model_set):
    from pymatgen.core import Structure

    electronic, ionic = model_set
    docs = pool_docs()[:5]
    records = [
        StructureRecord(
            d["material_id"],
            Structure.from_dict(d["structure"]),
            "test",
            fields={"band_gap": d["band_gap"]},
        )
        for d in docs
    ]
    predictions = predict_structures(records, str(electronic), "cpu", ionic_model=str(ionic))
    assert len(predictions) == 5
    for doc, source in zip(predictions, docs, strict=True):
        assert isinstance(doc, PredictionDoc)
        electronic_t = np.array(doc.dielectric_tensor)
        ionic_t = np.array(doc.eps_ionic.tensor)
        assert np.array_equal(np.array(doc.eps_total.tensor), electronic_t + ionic_t)
        assert doc.eps_total.eps_poly == pytest.approx(doc.eps_poly + doc.eps_ionic.eps_poly)
        assert min(doc.eps_ionic.eigenvalues) >= -1e-9  # PSD read-out
        assert doc.eps_ionic.tensor_std is not None and doc.eps_total.eps_poly_std > 0
        assert doc.figure_of_merit == pytest.approx(source["band_gap"] * doc.eps_total.eps_poly)
        assert doc.ionic_model == "set-ionic" and len(doc.ionic_model_checksum) == 64
    # the electronic fields are those of the electronic model alone
    alone = predict_structures(records[:1], str(electronic), "cpu")[0]
    assert alone.eps_total is None and alone.figure_of_merit is None
    # (float32 batches of one and of five agree to rounding)
    np.testing.assert_allclose(alone.dielectric_tensor, predictions[0].dielectric_tensor, rtol=1e-5)


def test_model_set_refuses_swapped_targets(model_set):
    electronic, ionic = model_set
    with pytest.raises(AnisoscreenError, match="must be electronic"):
        Predictor.load(str(ionic), device="cpu")
    with pytest.raises(AnisoscreenError, match="not an ionic model"):
        Predictor.load(str(electronic), device="cpu", ionic_model=str(electronic))


def test_objective_needs_an_ionic_model():
    # a static-tensor objective without one uses the shipped ionic model; a_r needs none
    def ionic(**options):
        return ScreeningMaker.from_options(**options).prediction_maker.ionic_model

    assert ionic(objective="fom") == "anisonet-mp-ionic-v1"
    assert ionic(objective="fom", ionic_model="x") == "x"
    assert ionic(objective="ar") is None
    ranking = RankingMaker(objective="fom")
    assert ScreeningMaker(ranking_maker=ranking).prediction_maker.ionic_model == (
        "anisonet-mp-ionic-v1"
    )
    with pytest.raises(AnisoscreenError, match="unknown objective"):
        ScreeningMaker.from_options(objective="kappa", ionic_model="x")
    with pytest.raises(AnisoscreenError, match="top_k"):
        ScreeningMaker.from_options(objective="fom", ionic_model="x", validate=True)
    assert (
        ScreeningMaker.from_options(objective="fom", ionic_model="x", validate=True, top_k=3).top_k
        == 3
    )


@pytest.fixture(scope="module")
def fom_screening(model_set, tmp_path_factory):
    """``run-screen --objective fom`` (as a flow) twice on the recorded pool."""
    electronic, ionic = model_set
    tmp_path = tmp_path_factory.mktemp("fom")
    pool = write_pool(tmp_path / "pool.json")
    settings = get_settings(data_dir=tmp_path / "d")
    maker = local_maker(electronic, pool, tmp_path / "d", ionic_model=str(ionic), objective="fom")
    flow = maker.make("fom-1")
    responses = run_locally(flow, store=build_job_store(settings), create_folders=False, log=False)
    ranking = responses[flow.jobs[2].uuid][1].output
    run_locally(maker.make("fom-2"), store=build_job_store(settings), create_folders=False,
                log=False)  # fmt: skip
    return tmp_path / "d", ranking


def test_fom_screening_ranks_by_fom_and_is_idempotent(fom_screening):
    data_dir, ranking = fom_screening
    settings = get_settings(data_dir=data_dir)
    values = [row.objective_value for row in ranking.ranking]
    assert ranking.objective == "fom" and len(values) > 5
    assert values == sorted(values, reverse=True) and None not in values
    with ResultsStore(settings) as results:
        preds = {p.material_id: p for p in results.query(PredictionDoc)}
        second = [r for r in results.query(ScreeningRunDoc) if r.run_id == "fom-2"][0]
        assert results.count("predictions") == len(preds) == len(values)
    assert second.n_predicted == 0 and second.n_reused == len(preds)
    for row in ranking.ranking:
        doc = preds[row.material_id]
        assert row.figure_of_merit == doc.figure_of_merit == objective_value(doc, "fom")
        assert row.figure_of_merit == pytest.approx(doc.band_gap * doc.eps_total.eps_poly)


def test_query_table_and_plot_show_the_static_columns(fom_screening, tmp_path):
    data_dir, ranking = fom_screening
    runner = CliRunner()
    cutoff = ranking.ranking[2].figure_of_merit
    out = runner.invoke(
        app, ["query", "--data-dir", str(data_dir), "--sort", "fom", "--fom-min", str(cutoff),
              "-f", "json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    records = json.loads(out.output)
    assert [r["material_id"] for r in records] == [r.material_id for r in ranking.ranking[:3]]
    assert all(r["predicted_eps_total"] > r["predicted_eps_poly"] for r in records)
    # a DFPT validation with ionic and total tensors shows beside the predictions
    top = ranking.ranking[0].material_id
    ionic = [[5.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 7.0]]
    electronic = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 5.0]]
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        results.upsert(
            [
                ValidationDoc(
                    material_id=top,
                    formula_pretty=ranking.ranking[0].formula,
                    job_uuid="dfpt-1",
                    state=ValidationState.COMPLETED,
                    epsilon_electronic=electronic,
                    epsilon_ionic=ionic,
                    eps_poly=13 / 3,
                    anisotropy_ratio=1.25,
                )
            ]
        )
    table = runner.invoke(
        app, ["table", "--data-dir", str(data_dir), "-c", "static,fom", "-f", "csv"]
    )
    assert table.exit_code == 0, table.output
    header, row = table.output.splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert cells["material_id"] == top
    assert float(cells["dft_eps_ionic_zz"]) == 7.0 and float(cells["dft_eps_total_zz"]) == 12.0
    assert float(cells["predicted_eps_total_xx"]) > float(cells["predicted_eps_ionic_xx"])
    assert float(cells["figure_of_merit"]) == pytest.approx(ranking.ranking[0].figure_of_merit,
                                                            abs=0.01)  # fmt: skip
    figure = tmp_path / "kappa.png"
    drawn = runner.invoke(
        app, ["plot", "high-kappa", "--data-dir", str(data_dir), "-o", str(figure)]
    )
    assert drawn.exit_code == 0, drawn.output
    assert figure.stat().st_size > 10_000


def test_adding_an_ionic_model_repredicts_electronic_only_results(model_set, tmp_path):
    electronic, ionic = model_set
    pool = write_pool(tmp_path / "pool.json")
    settings = get_settings(data_dir=tmp_path / "d")
    common = dict(
        source=str(pool),
        model=str(electronic),
        device="cpu",
        batch_size=4,
        processes=1,
        store={"data_dir": str(tmp_path / "d")},
        criteria=ScreeningCriteria(exclude_known_dielectrics=False),
    )
    store = build_job_store(settings)
    run_locally(
        ScreeningMaker.from_options(**common).make("a"),
        store=store,
        create_folders=False,
        log=False,
    )
    with_set = ScreeningMaker.from_options(**common, ionic_model=str(ionic), objective="eps-total")
    run_locally(with_set.make("b"), store=store, create_folders=False, log=False)
    with ResultsStore(settings) as results:
        runs = {r.run_id: r for r in results.query(ScreeningRunDoc)}
        preds = results.query(PredictionDoc)
    assert runs["b"].n_predicted == runs["a"].n_predicted == len(preds)
    assert all(p.eps_total is not None for p in preds)


def test_predict_cli_writes_the_three_tensors(model_set, tmp_path):
    from pymatgen.core import Structure

    electronic, ionic = model_set
    cif = tmp_path / "x.cif"
    Structure.from_dict(pool_docs()[0]["structure"]).to(filename=str(cif))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app,
        ["predict", str(cif), "-o", str(out), "--model", str(electronic), "--ionic-model",
         str(ionic), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = json.loads(out.read_text().splitlines()[0])
    assert line["dielectric_tensor"] == line["eps_electronic"]["tensor"]
    total = np.array(line["eps_total"]["tensor"])
    parts = np.array(line["eps_electronic"]["tensor"]) + np.array(line["eps_ionic"]["tensor"])
    assert np.array_equal(total, parts)
    for block in ("eps_electronic", "eps_ionic", "eps_total"):
        assert {"eigenvalues", "eps_poly", "tensor_std", "eps_poly_std"} <= set(line[block])

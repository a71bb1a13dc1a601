"""The ionic refine stage's rows in ``query``, ``table``, the browser and the HTML report.

A real small screen (the recorded MP pool, untrained electronic and ionic ensembles) ranks
by FOM and refines its top 2 with the closed-form spring potential and nominal Born charges
counted as a physics source, so the refined rows report the physics eps0 (different from
the network's). Each output must show the refined static eps_poly and FOM with
``ionic_method`` ``physics`` for those two, and the network's values labelled ``network``
for the others.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from jobflow import run_locally
from model_sets import write_model_set, write_pool
from typer.testing import CliRunner

from anisoscreen.candidates.filters import ScreeningCriteria
from anisoscreen.cli import app
from anisoscreen.query import CandidateQuery, find_candidates
from anisoscreen.schemas import PredictionDoc, RefinementDoc
from anisoscreen.screening.flows import ScreeningMaker, screening_outputs
from anisoscreen.screening.ionic_refine import IonicRefineMaker, RefineMethod, refine_ionic
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore, build_job_store
from anisoscreen.web import create_app

TOP = 2


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    """``run-screen --objective fom --refine-top 2`` (as a flow) into a fresh data dir."""
    tmp_path = tmp_path_factory.mktemp("show")
    write_pool(tmp_path / "pool.json")
    electronic, ionic = write_model_set(tmp_path)
    data_dir = tmp_path / "d"
    store = {"data_dir": str(data_dir)}
    settings = get_settings(data_dir=data_dir)
    maker = ScreeningMaker.from_options(
        source=str(tmp_path / "pool.json"),
        model=str(electronic),
        ionic_model=str(ionic),
        objective="fom",
        device="cpu",
        batch_size=4,
        processes=1,
        store=store,
        criteria=ScreeningCriteria(exclude_known_dielectrics=False),
        refine_top=TOP,
        refine_maker=IonicRefineMaker(
            potential="harmonic-springs",
            born_source="nominal",
            shard_size=1,
            store=store,
            physics_sources=("nominal",),
        ),
    )
    flow = maker.make("show-1")
    responses = run_locally(flow, store=build_job_store(settings), create_folders=False, log=False)
    outputs = screening_outputs(flow, responses)
    assert outputs is not None and outputs.refinement is not None
    refined = {r.material_id: r for r in outputs.refinement.refinements}
    assert len(refined) == TOP and {r.ionic_method for r in refined.values()} == {"physics"}
    with ResultsStore(settings) as results:
        predictions = {p.material_id: p for p in results.query(PredictionDoc)}
    assert len(predictions) > TOP
    return data_dir, settings, refined, predictions, outputs.ranking


def _network_id(predictions: dict[str, PredictionDoc], refined: dict) -> str:
    """A material with a network static tensor and no refinement."""
    return next(mid for mid, p in sorted(predictions.items()) if mid not in refined and p.eps_total)


def _invoke(data_dir: Path, *args: str) -> str:
    env = {"ANISOSCREEN_SHARED": str(data_dir.parent), "COLUMNS": "400"}  # rich: no wrapping
    done = CliRunner(env=env).invoke(app, [*args, "--data-dir", str(data_dir)])
    assert done.exit_code == 0, done.output
    return done.stdout


def test_refinements_are_stored_and_joined_to_their_predictions(screened):
    _, settings, refined, predictions, _ = screened
    with ResultsStore(settings) as results:
        docs = {d.material_id: d for d in results.query(RefinementDoc)}
        rows = {row.material_id: row for row in find_candidates(results)}
    assert set(docs) == set(refined)
    for mid, doc in docs.items():
        prediction = predictions[mid]
        assert doc.model == prediction.model and doc.refines(prediction)
        np.testing.assert_allclose(doc.eps_total, refined[mid].eps_total)
        assert len(doc.modes) == len(refined[mid].modes) > 0
        row = rows[mid]
        assert row.refinement == doc and row.ionic_method == "physics"
        assert row.predicted_eps_total == pytest.approx(refined[mid].eps_total_poly)
        assert row.figure_of_merit == pytest.approx(refined[mid].figure_of_merit)
        # the physics value differs from the network's, which the row still carries
        assert row.predicted_eps_total != pytest.approx(prediction.eps_total.eps_poly, rel=1e-3)
    other = rows[_network_id(predictions, refined)]
    assert other.refinement is None and other.ionic_method == "network"
    assert other.predicted_eps_total == other.prediction.eps_total.eps_poly
    assert other.figure_of_merit == other.prediction.figure_of_merit


def test_a_refinement_of_another_model_set_is_not_joined(screened):
    _, settings, refined, predictions, _ = screened
    mid = next(iter(refined))
    changed = predictions[mid].model_copy(update={"model_checksum": "0" * 64})
    with ResultsStore(settings) as results:
        doc = results.query(RefinementDoc, {"material_id": mid})[0]
    assert doc.refines(predictions[mid]) and not doc.refines(changed)


def test_a_row_that_kept_the_direct_value_says_direct(screened, tmp_path):
    """By default nominal charges are not trusted: the refined row keeps the network's eps0."""
    data_dir, _, refined, predictions, ranking = screened
    copy = tmp_path / "d"
    shutil.copytree(data_dir, copy)
    first, second = (row.material_id for row in ranking.ranking[:TOP])
    springs = RefineMethod(potential="harmonic-springs")
    output = refine_ionic.original(ranking, 0, 1, springs, {"data_dir": str(copy)})
    assert [r.ionic_method for r in output.refinements] == ["direct"]
    records = {r["material_id"]: r for r in json.loads(_invoke(copy, "query", "-f", "json"))}
    assert records[first]["ionic_method"] == "direct"
    network = predictions[first]
    assert records[first]["predicted_eps_total"] == pytest.approx(network.eps_total.eps_poly)
    assert records[first]["figure_of_merit"] == pytest.approx(network.figure_of_merit)
    assert records[first]["refinement"]["physics_eps_ionic"] is not None  # kept, not used
    assert records[second]["ionic_method"] == "physics"
    assert records[second]["figure_of_merit"] == pytest.approx(refined[second].figure_of_merit)


def test_query_shows_the_method_and_the_refined_values(screened):
    data_dir, _, refined, predictions, _ = screened
    records = {r["material_id"]: r for r in json.loads(_invoke(data_dir, "query", "-f", "json"))}
    for mid, refinement in refined.items():
        record = records[mid]
        assert record["ionic_method"] == "physics"
        assert record["predicted_eps_total"] == pytest.approx(refinement.eps_total_poly)
        assert record["figure_of_merit"] == pytest.approx(refinement.figure_of_merit)
        np.testing.assert_allclose(record["predicted_eps_total_tensor"], refinement.eps_total)
        # the network's value beside it, and the refinement with its Gamma modes
        assert record["network_eps_total"] == pytest.approx(predictions[mid].eps_total.eps_poly)
        assert record["refinement"]["potential"] == "harmonic-springs"
        assert len(record["refinement"]["modes"]) == len(refinement.modes)
    other = records[_network_id(predictions, refined)]
    assert other["ionic_method"] == "network" and other["refinement"] is None
    assert other["predicted_eps_total"] == other["network_eps_total"]

    rows = list(csv.DictReader(io.StringIO(_invoke(data_dir, "query", "-f", "csv"))))
    by_id = {r["material_id"]: r for r in rows}
    for mid, refinement in refined.items():
        assert by_id[mid]["ionic_method"] == "physics"
        assert float(by_id[mid]["predicted_eps_total"]) == pytest.approx(refinement.eps_total_poly)
    table = _invoke(data_dir, "query", "--limit", "0")
    assert "eps0 method" in table
    mid = next(iter(refined))
    line = next(text for text in table.splitlines() if mid in text)
    assert "physics" in line and f"{refined[mid].eps_total_poly:.2f}" in line


def test_table_export_shows_the_method_and_the_refined_values(screened):
    data_dir, _, refined, predictions, _ = screened
    text = _invoke(data_dir, "table", "--include-predictions", "-f", "csv", "-c", "static,fom")
    rows = {r["material_id"]: r for r in csv.DictReader(io.StringIO(text))}
    for mid, refinement in refined.items():
        row = rows[mid]
        assert row["ionic_method"] == "physics"
        assert float(row["predicted_eps_total_poly"]) == pytest.approx(
            refinement.eps_total_poly, abs=0.005
        )
        assert float(row["figure_of_merit"]) == pytest.approx(refinement.figure_of_merit, abs=0.005)
        assert float(row["predicted_eps_total_zz"]) == pytest.approx(
            refinement.eps_total[2][2], abs=0.05
        )
    other = rows[_network_id(predictions, refined)]
    assert other["ionic_method"] == "network"
    network = predictions[other["material_id"]]
    assert float(other["figure_of_merit"]) == pytest.approx(network.figure_of_merit, abs=0.005)
    markdown = _invoke(data_dir, "table", "--include-predictions", "-c", "fom")
    assert "ε⁰ Method" in markdown
    mid = next(iter(refined))
    line = next(text for text in markdown.splitlines() if mid in text)
    assert "| physics |" in line and f"{refined[mid].figure_of_merit:.2f}" in line


def test_browser_shows_the_method_and_the_refined_values(screened):
    _, settings, refined, predictions, _ = screened
    with (
        ResultsStore(settings) as results,
        TestClient(create_app(settings, results=results)) as client,
    ):
        body = client.get("/api/candidates", params={"limit": 100}).json()
        records = {r["material_id"]: r for r in body["data"]}
        for mid, refinement in refined.items():
            assert records[mid]["ionic_method"] == "physics"
            assert records[mid]["predicted_eps_total"] == pytest.approx(refinement.eps_total_poly)
            assert records[mid]["figure_of_merit"] == pytest.approx(refinement.figure_of_merit)
        network_id = _network_id(predictions, refined)
        assert records[network_id]["ionic_method"] == "network"
        # sorted by FOM, the browser and the query command agree (refined values included)
        by_fom = client.get("/api/candidates", params={"sort": "fom", "limit": 100}).json()
        expected = find_candidates(results, CandidateQuery(sort="fom"))
        assert [r["material_id"] for r in by_fom["data"]] == [r.material_id for r in expected]

        page = client.get("/candidates", params={"limit": 100}).text
        mid = next(iter(refined))
        row = re.search(rf'<tr data-material-id="{mid}".*?</tr>', page, re.S)
        assert row is not None and "ε⁰ method" in page
        assert '<td class="l ionic-method">physics</td>' in row.group(0)
        assert f'<td class="fom">{refined[mid].figure_of_merit:.2f}</td>' in row.group(0)

        material = client.get(f"/api/materials/{mid}").json()
        static = material["card"]["static"]
        assert static["ionic_method"] == "physics"
        assert static["potential"] == "harmonic-springs"
        assert static["total"]["eps_poly"] == pytest.approx(refined[mid].eps_total_poly)
        assert static["network_eps_total_poly"] == pytest.approx(
            predictions[mid].eps_total.eps_poly
        )
        html = client.get(f"/materials/{mid}").text
        assert 'data-ionic-method="physics"' in html
        assert f"<b>{refined[mid].eps_total_poly:.3f}</b>" in html
        network_html = client.get(f"/materials/{network_id}").text
        assert 'data-ionic-method="network"' in network_html


def test_report_shows_the_method_and_the_refined_values(screened, tmp_path):
    data_dir, _, refined, predictions, _ = screened
    out = tmp_path / "report.html"
    done = CliRunner(env={"ANISOSCREEN_SHARED": str(tmp_path)}).invoke(
        app, ["report", "--html", str(out), "--data-dir", str(data_dir), "--sort", "fom"]
    )
    assert done.exit_code == 0, done.output
    html = out.read_text(encoding="utf-8")
    for mid, refinement in refined.items():
        row = re.search(rf'<tr data-material-id="{mid}".*?</tr>', html, re.S)
        assert row is not None
        assert '<td class="l ionic-method">physics</td>' in row.group(0)
        assert f'<td class="eps-total">{refinement.eps_total_poly:.2f}</td>' in row.group(0)
        card = html[html.index(f'id="card-{mid}"') :]
        card = card[: card.index("</section>")]
        assert 'data-ionic-method="physics"' in card
        assert f"<b>{refinement.figure_of_merit:.2f}</b> eV" in card
    network_id = _network_id(predictions, refined)
    row = re.search(rf'<tr data-material-id="{network_id}".*?</tr>', html, re.S)
    assert row is not None and '<td class="l ionic-method">network</td>' in row.group(0)

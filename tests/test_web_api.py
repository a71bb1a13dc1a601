"""The results browser's REST API and pages through FastAPI's TestClient over a small store.

The store is the fixed data set of ``tests/report_data.py`` (seven materials, four validated)
plus a MoS2 structure and one screening run; answers are checked against
:func:`anisoscreen.query.find_candidates` (the ``query`` command's code path) and against the
documents themselves.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from pymatgen.core import Lattice, Structure
from report_data import MODEL, fill, small_docs

from anisoscreen.query import CandidateQuery, find_candidates
from anisoscreen.schemas import CandidateDoc, PredictionDoc, ScreeningRunDoc
from anisoscreen.web import create_app


def mos2() -> Structure:
    lattice = Lattice.hexagonal(3.19, 14.88)
    coords = [
        [1 / 3, 2 / 3, 0.25],
        [2 / 3, 1 / 3, 0.75],
        [1 / 3, 2 / 3, 0.621],
        [2 / 3, 1 / 3, 0.121],
        [1 / 3, 2 / 3, 0.879],
        [2 / 3, 1 / 3, 0.379],
    ]
    return Structure(lattice, ["Mo", "Mo", "S", "S", "S", "S"], coords)


@pytest.fixture
def store(memory_results):
    fill(memory_results)
    memory_results.upsert(
        [CandidateDoc.from_structure(mos2(), source="test", material_id="mp-2815")]
    )
    memory_results.upsert(
        [
            ScreeningRunDoc(
                run_id="run-1",
                source="bundled",
                n_input=300,
                removed_by={"energy_above_hull": 4, "band_gap": 2},
                n_candidates=294,
                n_predicted=7,
                model=MODEL,
            )
        ]
    )
    return memory_results


@pytest.fixture
def client(store, memory_settings):
    with TestClient(create_app(memory_settings, results=store)) as test_client:
        yield test_client


def ids(response) -> list[str]:
    return [record["material_id"] for record in response.json()["data"]]


def test_candidates_match_the_query_command(client, store):
    response = client.get("/api/candidates")
    assert response.status_code == 200
    body = response.json()
    expected = find_candidates(store, CandidateQuery())
    assert body["meta"]["total"] == len(expected) == 7
    assert ids(response) == [row.material_id for row in expected]
    first = body["data"][0]
    assert first["anisotropy_ratio"] == pytest.approx(expected[0].anisotropy_ratio)
    # a_r sorted, descending, DFT value where validated
    ratios = [r["anisotropy_ratio"] for r in body["data"]]
    assert ratios == sorted(ratios, reverse=True)
    mos = next(r for r in body["data"] if r["material_id"] == "mp-2815")
    assert mos["validated"] and mos["model"] == MODEL  # the newest of two models
    assert mos["dft_anisotropy_ratio"] == pytest.approx(15.6 / 6.4)
    assert mos["predicted_anisotropy_ratio"] == pytest.approx(16.0 / 6.1)


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ("ar_min=1.5&limit=5", {"ar_min": 1.5}),
        ("ar_min=1.2&ar_max=3", {"ar_min": 1.2, "ar_max": 3}),
        ("dimensionality=2", {"dimensionality": [2]}),
        ("dimensionality=1,3", {"dimensionality": [1, 3]}),
        ("dimensionality=0&dimensionality=1", {"dimensionality": [0, 1]}),
        ("elements=O", {"elements": ["O"]}),
        ("elements=mo,s", {"elements": ["Mo", "S"]}),
        ("exclude_elements=O&exclude_elements=Se", {"exclude_elements": ["O", "Se"]}),
        ("validated_only=true", {"validated_only": True}),
        ("model=old-model", {"model": "old-model"}),
        ("sort=formula", {"sort": "formula"}),
        ("sort=eps_poly&descending=false", {"sort": "eps_poly", "descending": False}),
        ("sort=dft_ar", {"sort": "dft_ar"}),
        (
            "dn_min=1.5&sort=predicted_birefringence",
            {"dn_min": 1.5, "sort": "predicted_birefringence"},
        ),
        ("sort=birefringence", {"sort": "birefringence"}),
    ],
)
def test_filters_and_sorts_are_those_of_query(client, store, params, fields):
    response = client.get(f"/api/candidates?{params}")
    assert response.status_code == 200, response.text
    expected = find_candidates(store, CandidateQuery(**fields))
    assert (
        ids(response) == [row.material_id for row in expected][: 50 if "limit" not in params else 5]
    )
    assert response.json()["meta"]["total"] == len(expected)


def test_ar_filter_contract(client):
    response = client.get("/api/candidates?ar_min=1.5&limit=5")
    data = response.json()["data"]
    assert 0 < len(data) <= 5
    for record in data:
        assert record["material_id"] and record["predicted_anisotropy_ratio"] >= 1.5
        assert "anisotropy_ratio" in record


def test_pagination_walks_the_whole_list(client):
    full = ids(client.get("/api/candidates?sort=material_id"))
    pages = []
    for skip in range(0, 7, 3):
        response = client.get(f"/api/candidates?sort=material_id&skip={skip}&limit=3")
        assert response.json()["meta"] == {
            "total": 7,
            "skip": skip,
            "limit": 3,
            "query": "no filters",
        }
        pages += ids(response)
    assert pages == full == sorted(full)
    assert client.get("/api/candidates?skip=100").json()["data"] == []


@pytest.mark.parametrize(
    ("params", "where", "message"),
    [
        ("ar_min=abc", "ar_min", "valid number"),
        ("ar_min=-1", "ar_min", "greater than or equal to 0"),
        ("ar_min=3&ar_max=2", None, "larger than ar_max"),
        ("limit=501", "limit", "less than or equal to 500"),
        ("limit=-1", "limit", "greater than or equal to 0"),
        ("skip=-5", "skip", "greater than or equal to 0"),
        ("dimensionality=4", "dimensionality", "must be 0, 1, 2 or 3"),
        ("elements=Xx", "elements", "unknown element symbol 'Xx'"),
        ("elements=O&exclude_elements=O", None, "both required and excluded: O"),
        ("sort=%24where", "sort", "Input should be"),
        ("validated_only=maybe", "validated_only", "valid boolean"),
        (
            "anisotropy_ratio%5B%24gt%5D=1",
            "anisotropy_ratio[$gt]",
            "Extra inputs are not permitted",
        ),
        ("criteria=%7B%7D", "criteria", "Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_are_422_with_a_clear_message(client, params, where, message):
    response = client.get(f"/api/candidates?{params}")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(message in error["msg"] for error in detail), detail
    if where:
        assert any(error["loc"][-1] == where for error in detail), detail


def test_material_joins_candidate_predictions_and_validations(client):
    body = client.get("/api/materials/mp-2815").json()
    assert (
        body["candidate"]["formula_pretty"] == "MoS2"
        and len(body["candidate"]["structure"]["sites"]) == 6
    )
    assert [p["model"] for p in body["predictions"]] == [MODEL, "old-model"]
    assert len(body["validations"]) == 1
    card = body["card"]
    assert card["predicted"]["eigenvalues"] == pytest.approx([6.1, 16.0, 16.0])
    assert card["predicted"]["anisotropy_ratio"] == pytest.approx(16.0 / 6.1)
    assert card["dft"]["eigenvalues"] == pytest.approx([6.4, 15.6, 15.6])
    axis = card["predicted"]["principal_axes"][0]  # the smallest eigenvalue lies along x
    assert [abs(c) for c in axis] == pytest.approx([1.0, 0.0, 0.0])


def test_unknown_material_is_404_and_bad_id_is_422(client):
    response = client.get("/api/materials/mp-does-not-exist")
    assert response.status_code == 404 and "mp-does-not-exist" in response.json()["detail"]
    # any stored id is served (issue 24): a strange one is only an unknown id, never a query
    assert client.get("/api/materials/mp-1%20OR%201").status_code == 404
    assert client.get("/api/materials/" + "x" * 1001).status_code == 422  # over MAX_ID_LENGTH
    assert client.get("/materials/mp-does-not-exist").status_code == 404
    assert client.get("/api/materials/mp-1001/structure").status_code == 404  # no structure stored


def test_structure_downloads_parse_back(client):
    cif = client.get("/api/materials/mp-2815/structure?format=cif")
    assert cif.status_code == 200 and 'filename="mp-2815.cif"' in cif.headers["content-disposition"]
    assert Structure.from_str(cif.text, fmt="cif").composition.reduced_formula == "MoS2"
    poscar = client.get("/api/materials/mp-2815/structure?format=poscar")
    parsed = Structure.from_str(poscar.text, fmt="poscar")
    assert parsed.lattice.c == pytest.approx(14.88) and len(parsed) == 6
    assert client.get("/api/materials/mp-2815/structure?format=xyz").status_code == 422


def test_predictions_validations_runs_and_summary(client):
    predictions = client.get("/api/predictions?elements=Mo").json()
    assert predictions["meta"]["total"] == 2  # both models of MoS2, unjoined
    assert {p["model"] for p in predictions["data"]} == {MODEL, "old-model"}
    validations = client.get("/api/validations").json()
    assert validations["meta"]["total"] == 6
    flagged = client.get("/api/validations?state=flagged").json()["data"]
    assert [v["material_id"] for v in flagged] == ["mp-1003"]
    assert client.get("/api/validations?state=done").status_code == 422
    runs = client.get("/api/runs").json()
    assert runs["data"][0]["run_id"] == "run-1" and runs["data"][0]["removed_by"]["band_gap"] == 2
    assert client.get("/api/campaigns").json()["data"] == []  # runs are not campaigns
    summary = client.get("/api/summary").json()
    assert summary["counts"] == {"candidates": 1, "predictions": 8, "validations": 6, "runs": 1}
    assert summary["n_materials"] == 7 and summary["n_validated"] == 4
    assert summary["validation_states"] == {"completed": 4, "flagged": 1, "submitted": 1}
    assert summary["dimensionality"] == {"0D": 1, "1D": 1, "2D": 3, "3D": 1, "unknown": 1}
    assert summary["anisotropy_ratio"]["max"] == pytest.approx(20.8 / 2.7, rel=0.05)


def test_server_is_read_only_and_documented(client):
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)("/api/candidates")
        assert response.status_code == 405
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/candidates", "/api/materials/{material_id}", "/api/summary"} <= set(paths)
    names = {p["name"] for p in paths["/api/candidates"]["get"]["parameters"]}
    assert {"ar_min", "ar_max", "dimensionality", "elements", "sort", "skip", "limit"} <= names


def test_pages_list_filter_and_show_materials(client, store):
    home = client.get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    for formula in ("NaV2O4", "MoS2", "K4Ni3NO6", "Si"):
        assert f'data-formula="{formula}"' in home.text
    filtered = client.get("/candidates?ar_min=2.5&ar_max=&elements=")  # empty fields ignored
    assert filtered.status_code == 200
    rows = re.findall(r'data-material-id="([^"]+)"', filtered.text)
    expected = [row.material_id for row in find_candidates(store, CandidateQuery(ar_min=2.5))]
    assert rows == expected == ["mp-1104369", "mp-1001", "mp-1003", "mp-2815"]
    bad = client.get("/candidates?ar_min=abc")
    assert bad.status_code == 422 and "Invalid filter: ar_min" in bad.text
    page = client.get("/materials/mp-2815")
    assert page.status_code == 200
    assert 'id="viewer"' in page.text and "/static/vendor/3dmol/3Dmol-min.js" in page.text
    assert 'id="predicted-tensor"' in page.text and 'id="dft-tensor"' in page.text
    assert "16.000" in page.text and "15.600" in page.text
    optics = client.get("/materials/mp-1104369")
    assert 'id="spectra"' in optics.text and "<svg" in optics.text
    assert client.get("/static/vendor/3dmol/3Dmol-min.js").status_code == 200
    assert "http://" not in page.text.replace("http://www.w3.org", "")
    # no external resource is loaded; the one outside link is the Materials Project page
    mp_link = "https://next-gen.materialsproject.org/materials/mp-2815"
    assert f'<a href="{mp_link}" id="mp-link"' in page.text
    assert "https://" not in page.text.replace(mp_link, "")
    assert 'id="space-group"' in page.text and 'class="birefringence"' in page.text
    # the predicted MoS2 tensor (6.1, 16, 16) is uniaxial negative with its optic axis along
    # Cartesian x, the lattice direction [1 0 0] of the stored hexagonal cell
    assert 'class="crystal-axes"' in page.text and "uniaxial negative" in page.text
    assert '<dd class="optic-axes">[1.000 0.000 0.000]</dd>' in page.text


def test_overview_page_and_figures(client):
    page = client.get("/overview")
    assert page.status_code == 200 and "/figures/periodic-count.svg" in page.text
    assert "removed by energy_above_hull" in page.text
    figure = client.get("/figures/dimensionality.svg")
    assert figure.headers["content-type"] == "image/svg+xml" and figure.text.startswith("<svg")
    assert client.get("/figures/not-a-figure.svg").status_code == 422


def test_snapshot_is_reread_after_refresh(store, memory_settings):
    app = create_app(memory_settings, results=store, refresh_s=0.0)
    with TestClient(app) as client:
        assert client.get("/api/candidates").json()["meta"]["total"] == 7
        extra = small_docs()[0][0].model_copy(update={"material_id": "mp-9999"})
        store.upsert([PredictionDoc.model_validate(extra.model_dump())])
        assert client.get("/api/candidates").json()["meta"]["total"] == 8


def test_a_slow_reread_runs_in_the_background_and_the_new_snapshot_replaces_the_old(store):
    import time

    from anisoscreen.web.snapshot import ResultsView

    view = ResultsView(store, refresh_s=0.0, sync_load_s=-1.0)  # every re-read in background
    first = view.snapshot()
    assert len(first.candidate_rows(CandidateQuery())) == 7
    extra = small_docs()[0][0].model_copy(update={"material_id": "mp-9999"})
    store.upsert([PredictionDoc.model_validate(extra.model_dump())])
    assert view.snapshot() is first  # stale: answered from the old one while the re-read runs
    deadline = time.monotonic() + 60
    while view.snapshot() is first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(view.snapshot().candidate_rows(CandidateQuery())) == 8


def test_the_embedded_store_is_reread_only_after_a_write(tmp_path):
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore
    from anisoscreen.web.snapshot import ResultsView

    with ResultsStore(get_settings(data_dir=tmp_path / "d")) as results:
        fill(results)
        view = ResultsView(results, refresh_s=0.0, sync_load_s=60.0)  # re-read in the request
        first = view.snapshot()
        assert first.revision is not None and view.snapshot() is first  # nothing written
        extra = small_docs()[0][0].model_copy(update={"material_id": "mp-9999"})
        results.upsert([PredictionDoc.model_validate(extra.model_dump())])
        second = view.snapshot()
        assert second is not first and second.revision == results.revision()
        assert len(second.candidate_rows(CandidateQuery())) == 8

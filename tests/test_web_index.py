"""The API index, campaigns in the browser, ``limit`` as in the CLI, offline API docs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from report_data import fill

from anisoscreen.schemas import CampaignDoc, CampaignPick, CampaignRound
from anisoscreen.web import create_app
from anisoscreen.web.security import DOCS_CSP


def _campaign() -> CampaignDoc:
    picks = [
        CampaignPick(
            material_id="mp-1001",
            formula_pretty="A",
            predicted=2.0,
            spread=0.3,
            observed=2.4,
            state="completed",
        ),
        CampaignPick(
            material_id="mp-1003",
            formula_pretty="B",
            predicted=1.8,
            state="failed",
            error="no VASP executable",
        ),
    ]
    return CampaignDoc(
        name="demo",
        base_model="anisonet-mp-v2",
        current_model="demo-r0",
        batch_size=2,
        budget=10,
        rounds=[
            CampaignRound(
                index=0,
                model="anisonet-mp-v2",
                stage="done",
                picks=picks,
                new_model="demo-r0",
                spread_calibrated=False,
            )
        ],
    )


@pytest.fixture
def client(memory_results, memory_settings):
    fill(memory_results)
    memory_results.upsert([_campaign()])
    with TestClient(create_app(memory_settings, results=memory_results)) as test_client:
        yield test_client


def test_api_index_lists_every_endpoint(client):
    index = client.get("/api")
    assert index.status_code == 200
    body = index.json()
    paths = {e["path"] for e in body["endpoints"]}
    schema_paths = set(client.get("/openapi.json").json()["paths"])
    assert paths == schema_paths
    assert {"/api/candidates", "/api/campaigns", "/api/summary", "/api"} <= paths
    assert body["docs"] == "/docs" and body["openapi"] == "/openapi.json"


def test_campaigns_are_campaign_docs_with_a_page(client):
    data = client.get("/api/campaigns").json()
    assert data["meta"]["total"] == 1
    (doc,) = data["data"]
    assert doc["name"] == "demo" and doc["rounds"][0]["picks"][1]["error"] == "no VASP executable"
    assert client.get("/api/campaigns/demo").json()["current_model"] == "demo-r0"
    assert client.get("/api/campaigns/nope").status_code == 404
    listing = client.get("/campaigns")
    assert listing.status_code == 200 and 'data-campaign="demo"' in listing.text
    page = client.get("/campaigns/demo")
    assert page.status_code == 200
    assert 'data-material-id="mp-1001"' in page.text and "no VASP executable" in page.text
    assert "2.400" in page.text and "demo-r0" in page.text  # best DFT so far, round's model
    assert "spread uncalibrated: the model has no calibration for ar" in page.text
    assert client.get("/campaigns/nope").status_code == 404


def test_limit_zero_means_all_as_in_the_cli(client):
    everything = client.get("/api/candidates?limit=0").json()
    assert len(everything["data"]) == everything["meta"]["total"] == 7
    assert client.get("/api/validations?limit=0").json()["meta"]["total"] >= 4
    assert client.get("/api/candidates?limit=-1").status_code == 422


def test_api_docs_load_only_vendored_assets(client):
    for path, asset in (
        ("/docs", "/static/vendor/swagger-ui/swagger-ui-bundle.js"),
        ("/redoc", "/static/vendor/redoc/redoc.standalone.js"),
    ):
        page = client.get(path)
        assert page.status_code == 200 and asset in page.text
        assert "https://" not in page.text and "<script>" not in page.text  # no inline script
        assert page.headers["content-security-policy"] == DOCS_CSP
        assert client.get(asset).status_code == 200
    assert "cdn" not in DOCS_CSP and "https:" not in DOCS_CSP
    assert client.get("/static/docs/swagger-init.js").status_code == 200

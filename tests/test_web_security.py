"""The results browser under hostile requests and hostile data (issue 24, items 3 and 8).

- non-finite filter bounds are a 422 and cannot poison the listing cache;
- only trusted ``Host`` headers are answered; every response carries the security headers
  and pages run no inline script;
- any stored id, however strange or long (up to ``MAX_ID_LENGTH``), is linked from the
  table to a page that serves it.
"""

from __future__ import annotations

import math
import re
import socket
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from report_data import fill

from anisoscreen.query import CandidateQuery
from anisoscreen.schemas import CandidateDoc, PredictionDoc
from anisoscreen.web import create_app
from anisoscreen.web.api import MAX_ID_LENGTH
from anisoscreen.web.security import PAGE_CSP, allowed_hosts, host_of
from anisoscreen.web.snapshot import Snapshot

HOSTILE_IDS = [
    "structures.json#3",  # the default id of a JSON record without material_id
    "a/b?c=d&e",
    "<script>alert(1)</script>",
    'quote" onmouseover="x',
    "ü-ß 空格 id",
    "dots/../../etc",
    "x" * MAX_ID_LENGTH,
]
TOO_LONG = "y" * (MAX_ID_LENGTH + 1)


@pytest.fixture
def client(memory_results, memory_settings):
    fill(memory_results)
    with TestClient(create_app(memory_settings, results=memory_results)) as test_client:
        yield test_client


# -- item 3: the listing cache ------------------------------------------------------------


@pytest.mark.parametrize("bound", ["inf", "-inf", "nan", "Infinity", "1e999"])
@pytest.mark.parametrize("field", ["ar_min", "ar_max", "eps_total_min", "fom_min"])
def test_non_finite_bounds_are_422_and_leave_the_listing_intact(client, field, bound):
    response = client.get(f"/api/candidates?{field}={bound}")
    assert response.status_code == 422 and field in response.text
    assert client.get(f"/candidates?{field}={bound}").status_code == 422
    assert client.get("/api/candidates").json()["meta"]["total"] == 7
    assert len(re.findall(r'<tr data-material-id="', client.get("/").text)) == 7


def test_listing_cache_keys_on_exact_values(memory_results):
    fill(memory_results)
    snapshot = Snapshot.load(memory_results)
    infinite = CandidateQuery.model_construct(**{**CandidateQuery().__dict__, "ar_min": math.inf})
    assert snapshot.candidate_rows(infinite) == []
    assert len(snapshot.candidate_rows(CandidateQuery())) == 7


# -- item 8: trusted hosts and headers ------------------------------------------------------


def test_allowed_hosts_from_the_bind_address():
    assert allowed_hosts("127.0.0.1") >= {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("10.1.2.3") == {"10.1.2.3"}
    assert allowed_hosts("10.1.2.3", ["Results.Example.org."]) == {
        "10.1.2.3",
        "results.example.org",
    }
    wildcard = allowed_hosts("0.0.0.0")
    assert "0.0.0.0" not in wildcard and socket.gethostname().lower() in wildcard
    assert host_of("[::1]:8000") == "::1" and host_of("LocalHost:80") == "localhost"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8000", 200),
        ("localhost", 200),
        ("[::1]:8000", 200),
        ("results.example.org", 200),
        ("evil.example", 400),
        ("127.0.0.1.evil.example", 400),
        ("", 400),
    ],
)
def test_only_trusted_hosts_are_answered(memory_results, memory_settings, host, status):
    fill(memory_results)
    hosts = allowed_hosts("127.0.0.1", ["results.example.org"])
    app = create_app(memory_settings, results=memory_results, hosts=hosts)
    with TestClient(app) as client:
        for path in ("/", "/api/candidates", "/static/material.js"):
            response = client.get(path, headers={"host": host})
            assert response.status_code == status, (path, host)
            assert response.headers["content-security-policy"] == PAGE_CSP


def test_every_response_has_the_security_headers_and_pages_run_no_inline_script(client):
    for path, status in [
        ("/", 200),
        ("/candidates", 200),
        ("/overview", 200),
        ("/materials/mp-1104369", 200),
        ("/api/summary", 200),
        ("/static/candidates.js", 200),
        ("/materials/nothing", 404),
        ("/candidates?ar_min=x", 422),
    ]:
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["content-security-policy"] == PAGE_CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        if response.headers["content-type"].startswith("text/html"):
            for tag in re.findall(r"<script[^>]*>", response.text):
                assert re.search(r'src="/static/', tag) or 'type="application/json"' in tag, tag
    assert "frame-ancestors 'none'" in PAGE_CSP and "script-src 'self';" in PAGE_CSP
    refused = client.post("/api/candidates")
    assert refused.status_code == 405 and "content-security-policy" in refused.headers


# -- item 8: hostile ids are served ---------------------------------------------------------


def _prediction(material_id: str, ratio: float) -> PredictionDoc:
    return PredictionDoc.from_tensor(
        [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0 * ratio]],
        material_id=material_id,
        formula_pretty="AlN",
        model="m",
        model_version="1",
        model_checksum="0" * 64,
    )


def test_hostile_and_long_ids_are_linked_and_served(memory_results, memory_settings, triclinic):
    ids = [*HOSTILE_IDS, TOO_LONG]
    memory_results.upsert(_prediction(i, 1.1 + n / 100) for n, i in enumerate(ids))
    memory_results.upsert(
        CandidateDoc.from_structure(triclinic, source="test", material_id=i) for i in ids
    )
    with TestClient(create_app(memory_settings, results=memory_results)) as client:
        table = client.get("/candidates?limit=100")
        assert table.status_code == 200 and "<script>alert" not in table.text
        hrefs = re.findall(r'<a href="(/materials/[^"]*)"', table.text)
        assert sorted(unquote(h.removeprefix("/materials/")) for h in hrefs) == sorted(HOSTILE_IDS)
        assert TOO_LONG in table.text  # listed, without a link to a page that would refuse it
        for href in hrefs:
            page = client.get(href)
            assert page.status_code == 200, href
            material_id = unquote(href.removeprefix("/materials/"))
            api = client.get("/api" + href)
            assert api.status_code == 200 and api.json()["material_id"] == material_id
            (link,) = re.findall(r'href="(/api/materials/[^"]*/structure\?format=cif)"', page.text)
            cif = client.get(link)
            assert cif.status_code == 200 and "_cell_length_a" in cif.text
            disposition = cif.headers["content-disposition"]
            assert disposition.isascii() and "\n" not in disposition
        assert client.get("/api/materials/" + TOO_LONG).status_code == 422

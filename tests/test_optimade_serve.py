"""``serve``'s ``/optimade``: the OPTIMADE validator passes, filters work, the client reads it back.

``anisoscreen serve`` runs as a subprocess on 127.0.0.1 (a free port) over a small store: the
seven predictions of ``report_data`` (four DFPT-validated), each with a stored structure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from pymatgen.core import Lattice, Structure
from report_data import fill

from anisoscreen.candidates.optimade import OptimadeFetch, OptimadeQuery
from anisoscreen.query import find_candidates
from anisoscreen.schemas import CandidateDoc
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore

sys.path.insert(0, str(Path(__file__).parent))

import crystals  # noqa: E402
from cli_helpers import CLI  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def structures() -> dict[str, Structure]:
    """A structure per stored material (shapes only matter for the round trip)."""
    rock = crystals.nacl()
    mos2 = crystals.mos2()
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    ortho = Structure(
        Lattice.orthorhombic(3.9, 5.1, 7.3),
        ["Ba", "Cu", "O"],
        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]],
    )
    return {
        "mp-1104369": ortho,
        "mp-2815": mos2,
        "mp-1001": rock,
        "mp-1002": ortho,
        "mp-1003": mos2,
        "mp-1004": rock,
        "mp-149": si,
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``anisoscreen serve`` over the filled store; yields (OPTIMADE base URL, data dir)."""
    folder = tmp_path_factory.mktemp("optimade-serve")
    data_dir = folder / "data"
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        fill(results)
        results.upsert(
            [
                CandidateDoc.from_structure(s, "test", material_id=mid)
                for mid, s in structures().items()
            ]
        )
    port = free_port()
    log = folder / "serve.log"
    env = {**os.environ, "OPTIMADE_CONFIG_FILE": str(folder / "no-config.json")}
    code = CLI
    cmd = [sys.executable, "-c", code, "serve", "--data-dir", str(data_dir)]
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/optimade"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{url}/v1/info", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.3)
        yield url, data_dir
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.slow
def test_optimade_validator_passes(served):
    url, _ = served
    validator = shutil.which("optimade-validator")
    assert validator, "optimade-validator (optimade[server]) is not installed"
    result = subprocess.run([validator, f"{url}/v1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_provider_fields_filter_and_match_the_store(served):
    url, data_dir = served
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        rows = {row.material_id: row for row in find_candidates(results)}
    answer = requests.get(
        f"{url}/v1/structures",
        params={"filter": "_anisoscreen_birefringence > 0.3", "page_limit": 100},
        timeout=30,
    ).json()
    got = {entry["id"]: entry["attributes"] for entry in answer["data"]}
    expected = {mid for mid, row in rows.items() if row.birefringence > 0.3}
    assert set(got) == expected and "mp-149" not in got  # cubic Si: dn = 0
    mos2 = got["mp-2815"]
    row = rows["mp-2815"]
    assert mos2["_anisoscreen_birefringence"] == pytest.approx(row.birefringence)
    assert mos2["_anisoscreen_dft_dielectric_tensor"] == row.dft_tensor
    assert mos2["_anisoscreen_predicted_dielectric_tensor"] == row.prediction.dielectric_tensor
    assert mos2["_anisoscreen_anisotropy_ratio"] == pytest.approx(row.anisotropy_ratio)
    assert mos2["_anisoscreen_validation_state"] == "completed"
    assert mos2["_anisoscreen_model"] == row.model and mos2["_anisoscreen_model_version"] == "1.0"
    assert mos2["_anisoscreen_optical_character"] == row.optical_character
    assert len(mos2["_anisoscreen_refractive_indices"]) == 3
    flagged = requests.get(
        f"{url}/v1/structures",
        params={"filter": '_anisoscreen_validation_state = "flagged"'},
        timeout=30,
    ).json()
    assert [e["id"] for e in flagged["data"]] == ["mp-1003"]
    info = requests.get(f"{url}/v1/info/structures", timeout=30).json()
    assert "_anisoscreen_birefringence" in info["data"]["properties"]


def test_the_optimade_client_reads_the_served_candidates_back(served, tmp_path):
    url, data_dir = served
    query = OptimadeQuery(
        max_sites=None,
        max_energy_above_hull=None,
        min_band_gap=None,
        exclude_noble_gas_hydrogen_only=False,
        page_limit=3,  # several pages
    )
    batch = OptimadeFetch(f"optimade:{url}", tmp_path / "cache", query).load()
    assert not batch.failures
    by_id = {doc.material_id: doc for doc in batch.candidates}
    originals = structures()
    assert set(by_id) == set(originals)
    with ResultsStore(get_settings(data_dir=data_dir)) as results:
        rows = {row.material_id: row for row in find_candidates(results)}
    for mid, doc in by_id.items():
        original = originals[mid]
        assert doc.formula_pretty == original.composition.reduced_formula
        assert doc.structure.lattice.abc == pytest.approx(original.lattice.abc)
        assert len(doc.structure) == len(original)
        # the provider's hull energy and gap come back through the client's field mapping
        assert doc.energy_above_hull == pytest.approx(rows[mid].energy_above_hull)
        assert doc.band_gap == pytest.approx(rows[mid].band_gap)


def test_a_store_write_shows_in_the_next_optimade_answer(memory_results, memory_settings):
    from fastapi.testclient import TestClient

    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.web.app import create_app

    fill(memory_results)
    shapes = structures()
    memory_results.upsert([CandidateDoc.from_structure(shapes["mp-2815"], "t", "mp-2815")])
    app = create_app(memory_settings, results=memory_results, refresh_s=0.0)
    with TestClient(app) as client:
        first = client.get("/optimade/v1/structures").json()
        assert [e["id"] for e in first["data"]] == ["mp-2815"]
        new = PredictionDoc.from_tensor(
            [[2.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]],
            material_id="mp-149",
            formula_pretty="Si",
            model="anisonet-test",
            model_version="1.0",
            model_checksum="0" * 64,
        )
        memory_results.upsert([CandidateDoc.from_structure(shapes["mp-149"], "t", "mp-149"), new])
        answer = client.get("/optimade/v1/structures", params={"filter": 'id="mp-149"'}).json()
        (entry,) = answer["data"]
        assert entry["attributes"]["_anisoscreen_birefringence"] == pytest.approx(3**0.5 - 2**0.5)
        assert entry["attributes"]["_anisoscreen_validation_state"] == "none"

"""OPTIMADE candidates against the real reference server (optimade[server], mongomock backend).

The server runs as a subprocess on 127.0.0.1 (a free port), loaded with
``tests/data/optimade_oxides_slice.jsonl.gz``: 150 entries of the shared MP oxide pool plus one
partially occupied copy (``workflows/build_optimade_test_slice.py``). It caps pages at 10
entries, so every fetch spans several pages, and serves the pool's hull energy and band gap as
``_exmpl_energy_above_hull`` and ``_exmpl_band_gap``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cli_helpers import CLI

from anisoscreen.candidates.filters import NOBLE_GASES_AND_H
from anisoscreen.candidates.optimade import (
    OptimadeFetch,
    OptimadeQuery,
    RetryPolicy,
    build_filter,
    criteria_placement,
    is_optimade_source,
    resolve_provider,
)

SLICE = Path(__file__).parent / "data" / "optimade_oxides_slice.jsonl.gz"
PAGE_MAX = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReferenceServer:
    """optimade-python-tools' reference server as a subprocess, started and stopped by PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.jsonl = folder / "slice.jsonl"
        self.jsonl.write_bytes(gzip.decompress(SLICE.read_bytes()))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        described = [
            {
                "name": "energy_above_hull",
                "type": "float",
                "unit": "eV/atom",
                "description": "E hull",
            },
            {"name": "band_gap", "type": "float", "unit": "eV", "description": "PBE band gap"},
        ]
        env = {
            **os.environ,
            "OPTIMADE_CONFIG_FILE": str(self.folder / "no-config.json"),
            "OPTIMADE_INSERT_TEST_DATA": "false",
            "OPTIMADE_INSERT_FROM_JSONL": str(self.jsonl),
            "OPTIMADE_DATABASE_BACKEND": "mongomock",
            "OPTIMADE_PROVIDER_FIELDS": json.dumps({"structures": described}),
            "OPTIMADE_BASE_URL": self.url,
            "OPTIMADE_PAGE_LIMIT_MAX": str(PAGE_MAX),
        }
        cmd = [sys.executable, "-m", "uvicorn", "optimade.server.main:app"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                cmd, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                if requests.get(f"{self.url}/v1/info", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the OPTIMADE reference server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def structure_requests(self) -> int:
        return len(re.findall(r'"GET /v1/structures\?', self.log.read_text()))

    def client_connections(self) -> int:
        """TCP connections the server holds with clients (its listening socket excluded)."""
        import psutil

        assert self.process is not None
        connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        return sum(1 for c in connections if c.status != psutil.CONN_LISTEN)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ReferenceServer(tmp_path_factory.mktemp("optimade-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def entries() -> list[dict]:
    lines = gzip.decompress(SLICE.read_bytes()).decode().splitlines()[1:]
    return [json.loads(line) for line in lines]


def matching_ids(entries, query: OptimadeQuery) -> set[str]:
    """The ids of the slice that satisfy ``query``, evaluated here from the raw entries."""
    out = set()
    for entry in entries:
        a = entry["attributes"]
        elements = set(a["elements"])
        if "disorder" in a.get("structure_features", []):
            continue
        if query.max_sites is not None and a["nsites"] >= query.max_sites:
            continue
        if query.elements is not None and not elements <= set(query.elements):
            continue
        if query.exclude_noble_gas_hydrogen_only and elements <= set(NOBLE_GASES_AND_H):
            continue
        if a["energy_above_hull"] >= query.max_energy_above_hull:
            continue
        if a["band_gap"] <= query.min_band_gap:
            continue
        out.add(entry["id"])
    return out


def test_sources_and_providers_resolve():
    assert is_optimade_source("optimade:http://127.0.0.1:1") and is_optimade_source("alexandria")
    assert not is_optimade_source("mp") and not is_optimade_source("bundled")
    assert resolve_provider("optimade:mp").base_url == "https://optimade.materialsproject.org"
    assert resolve_provider("alexandria").base_url == "https://alexandria.icams.rub.de/pbe"
    assert resolve_provider("optimade:http://h:1/v1/structures/").base_url == "http://h:1"


def test_filter_follows_the_grammar_and_names_every_pushed_criterion():
    from anisoscreen.candidates.optimade import ServedFields

    query = OptimadeQuery(max_sites=40, elements=("Ar", "O", "Ti"))
    text = build_filter(query, ServedFields("_x_e_above_hull", "_x_band_gap"))
    assert 'NOT structure_features HAS ANY "disorder"' in text
    assert "nsites<40" in text and "_x_e_above_hull<0.05" in text and "_x_band_gap>0.5" in text
    assert 'elements HAS ANY "O","Ti"' in text  # not made of noble gases (Ar) only
    forbidden = next(p for p in text.split(" AND ") if p.startswith("NOT elements HAS ANY"))
    assert '"Fe"' in forbidden and '"Ti"' not in forbidden and '"O"' not in forbidden
    # a nested MP-style name the grammar cannot express stays on the client
    nested = ServedFields("_mp_stability.gga_gga+u_r2scan.energy_above_hull", None)
    assert "_mp_stability" not in build_filter(query, nested)
    placement = criteria_placement(query, nested)
    assert placement["energy_above_hull"] == "client" and placement["band_gap"] == "no"


@pytest.mark.slow
def test_server_side_filters_are_honoured(server, entries, tmp_path):
    allowed = sorted({e for x in entries for e in x["attributes"]["elements"]} - {"Pt", "Ba"})
    query = OptimadeQuery(
        max_sites=30, max_energy_above_hull=0.02, min_band_gap=1.0, elements=tuple(allowed)
    )
    fetch = OptimadeFetch(f"optimade:{server.url}", tmp_path / "cache", query)
    fields, _, folder = fetch.plan()
    assert (fields.stability, fields.band_gap) == ("_exmpl_energy_above_hull", "_exmpl_band_gap")
    assert set(criteria_placement(query, fields).values()) >= {"server"}
    batch = fetch.load()
    expected = matching_ids(entries, query)
    assert 10 < len(expected) < 100  # the thresholds remove plenty, and leave plenty
    # what the server sent (the raw pages on disk) already satisfies every criterion
    sent = [
        e
        for page in sorted(folder.glob("page-*.json.gz"))
        for e in json.loads(gzip.decompress(page.read_bytes()))
    ]
    assert len(sorted(folder.glob("page-*.json.gz"))) >= 3
    assert {e["id"] for e in sent} == expected and len(sent) == len(expected)
    assert {c.material_id for c in batch.candidates} == expected and not batch.failures
    by_id = {e["id"]: e["attributes"] for e in entries}
    for doc in batch.candidates:  # provider fields mapped onto the candidate
        assert doc.energy_above_hull == by_id[doc.material_id]["energy_above_hull"]
        assert doc.band_gap == by_id[doc.material_id]["band_gap"]
        assert doc.nsites == by_id[doc.material_id]["nsites"] and doc.structure.is_ordered
        assert doc.source == f"optimade:{server.url}"


def test_partially_occupied_entries_never_become_candidates(server, entries, tmp_path):
    """Even when the server is asked for it, a disordered entry is a failure, not a candidate."""
    fetch = OptimadeFetch(f"optimade:{server.url}", tmp_path / "cache")
    disordered = next(e for e in entries if "disorder" in e["attributes"]["structure_features"])
    page = fetch._page(0, [disordered], fetch.served_fields(), set(), False)
    assert not page.candidates and "disorder" in page.failures[0]["error"]


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    code = CLI
    env = {**os.environ, "ANISOSCREEN_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600
    )


def dry_run_counts(stdout: str) -> tuple[int, int]:
    fetched = int(re.search(r"(\d+) structures from", stdout).group(1))
    kept = int(re.search(r"would predict (\d+) candidates", stdout).group(1))
    return fetched, kept


def model_query() -> OptimadeQuery:
    from anisoscreen.model.checkpoint import read_model_info
    from anisoscreen.settings import get_settings

    info = read_model_info(get_settings().model)
    return OptimadeQuery(elements=tuple(sorted(info.element_symbols)))


@pytest.mark.slow
def test_run_screen_fetches_pages_and_a_killed_fetch_resumes_without_duplicates(
    server, entries, tmp_path
):
    data_dir = tmp_path / "data"
    source = f"optimade:{server.url}"
    expected = matching_ids(entries, model_query())
    total_pages = -(-len(expected) // PAGE_MAX)
    assert total_pages >= 5

    # first run: killed once it has saved two pages (the server is paused so it cannot finish)
    code = CLI
    env = {**os.environ, "ANISOSCREEN_DATA_DIR": str(data_dir)}
    first = subprocess.Popen(
        [sys.executable, "-c", code, "run-screen", "--source", source, "--dry-run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_file = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list((data_dir / "cache" / "optimade").glob("*/state.json"))
        if found and json.loads(found[0].read_text())["pages"] >= 2:
            state_file = found[0]
            break
        assert first.poll() is None, "the fetch ended before it could be interrupted"
        time.sleep(0.02)
    assert state_file is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    done = json.loads(state_file.read_text())["pages"]
    assert 2 <= done < total_pages
    # the server answers (and logs) the request the killed run left open, then closes it
    deadline = time.monotonic() + 60
    while server.client_connections() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.client_connections(), "the killed run's connection stayed open"
    before = server.structure_requests()

    # second run: resumes from the saved position and fetches only the missing pages
    out = run_cli("run-screen", "--source", source, "--dry-run", data_dir=data_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert server.structure_requests() - before == total_pages - done
    fetched, kept = dry_run_counts(out.stdout)
    assert fetched == len(expected)  # no duplicates from the pages read back
    assert 0 < kept <= fetched
    state = json.loads(state_file.read_text())
    assert state["complete"] and state["pages"] == total_pages

    # a third run reads everything from the cache: same candidates, no request at all
    before = server.structure_requests()
    fetch = OptimadeFetch(source, data_dir / "cache" / "optimade", model_query())
    ids = [c.material_id for c in fetch.load().candidates]
    assert server.structure_requests() == before
    assert len(ids) == len(set(ids)) and set(ids) == expected


@pytest.mark.slow
def test_transient_failures_are_retried_with_backoff(server, entries, tmp_path):
    """The server goes down after the first page; the client backs off until it is back."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            server.start()  # same port, same data

    query = OptimadeQuery(elements=None)
    fetch = OptimadeFetch(
        f"optimade:{server.url}",
        tmp_path / "cache",
        query,
        RetryPolicy(retries=6, backoff=0.01, sleep=sleep),
    )
    pages = fetch.pages()
    first = next(pages)
    server.stop()
    rest = list(pages)
    assert waits[:2] == [0.01, 0.02]  # exponential back-off, then success
    ids = [c.material_id for p in [first, *rest] for c in p.candidates]
    assert len(ids) == len(set(ids)) == len(matching_ids(entries, query))

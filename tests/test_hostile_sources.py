"""A hostile or broken OPTIMADE provider cannot make a fetch run for ever or flood the terminal.

Each test serves a tiny OPTIMADE-like API from a thread on 127.0.0.1 (``http.server``) that
misbehaves in one way: ``links.next`` loops back, the same entries come again under new
addresses, pages never end, an answer trickles one byte at a time, a page is too large, or an
error text carries terminal escapes and rich markup.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cli_helpers import CLI

from anisoscreen.candidates.json_cache import write_json_gz_atomic
from anisoscreen.candidates.optimade import OptimadeFetch, OptimadeQuery, RetryPolicy
from anisoscreen.candidates.optimade.paging import _query_key, _write_state
from anisoscreen.candidates.paging_guard import MIN_SLACK_PAGES
from anisoscreen.errors import AnisoscreenWarning, SourceError
from anisoscreen.safe_text import safe_text

SLICE = Path(__file__).parent / "data" / "optimade_oxides_slice.jsonl.gz"
PAGE = 3


def _template() -> dict:
    line = gzip.decompress(SLICE.read_bytes()).decode().splitlines()[1]
    entry = json.loads(line)
    entry["attributes"].pop("last_modified", None)
    return entry


TEMPLATE = _template()


def entry(ident: str) -> dict:
    return {**TEMPLATE, "id": ident}


class Provider(ThreadingHTTPServer):
    """An OPTIMADE-like server whose ``/v1/structures`` answers come from ``page(n)``."""

    daemon_threads = True

    def __init__(self, page) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.page = page
        self.requests: list[str] = []
        self.closing = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def link(self, number: int) -> str:
        return f"{self.url}/v1/structures?page={number}"


class Handler(BaseHTTPRequestHandler):
    server: Provider

    def log_message(self, *args) -> None:
        pass

    def send_json(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/v1/info/structures":
            return self.send_json({"data": {"properties": {}}})
        if parts.path == "/v1/info":
            return self.send_json({"meta": {"provider": {"prefix": "x"}}})
        self.server.requests.append(self.path)
        number = int(parse_qs(parts.query).get("page", ["0"])[0])
        answer = self.server.page(self.server, number)
        if callable(answer):
            return answer(self)
        return self.send_json(answer)


@pytest.fixture
def serve():
    servers: list[Provider] = []

    def start(page) -> Provider:
        server = Provider(page)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.closing.set()
        server.shutdown()
        server.server_close()


def fetch_all(server: Provider, cache: Path, retry: RetryPolicy | None = None):
    fetch = OptimadeFetch(
        f"optimade:{server.url}",
        cache,
        OptimadeQuery(elements=None, page_limit=PAGE),
        retry or RetryPolicy(retries=0, sleep=lambda s: None),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = fetch.load()
    messages = [str(w.message) for w in caught if issubclass(w.category, AnisoscreenWarning)]
    return batch, messages, fetch.plan()[2]


def page_of(server: Provider, number: int, ids: list[str], total: int, next_page: int | None):
    links = {"next": server.link(next_page) if next_page is not None else None}
    meta = {"data_returned": total, "more_data_available": next_page is not None}
    return {"data": [entry(i) for i in ids], "links": links, "meta": meta}


def test_a_next_link_back_to_a_fetched_page_stops_and_a_rerun_fetches_nothing(serve, tmp_path):
    # page 0 -> page 1 -> page 1 -> ... for ever
    def page(server, n):
        return page_of(server, n, [f"e{n}-{k}" for k in range(PAGE)], 100, 1)

    server = serve(page)
    batch, messages, folder = fetch_all(server, tmp_path)
    assert len(server.requests) == 2 and len(batch.candidates) == 2 * PAGE
    assert len(messages) == 1 and "links.next points back" in messages[0]
    assert sorted(p.name for p in folder.glob("page-*")) == [
        "page-000000.json.gz",
        "page-000001.json.gz",
    ]
    state = json.loads((folder / "state.json").read_text())
    assert state["complete"] and state["next"] is None and state["pages"] == 2

    again, messages, _ = fetch_all(server, tmp_path)  # the stop is kept: no request at all
    assert len(server.requests) == 2 and len(again.candidates) == 2 * PAGE
    assert len(messages) == 1 and "links.next points back" in messages[0]


def test_a_page_of_known_entries_under_a_new_address_stops_the_fetch(serve, tmp_path):
    def page(server, n):  # every page after the second repeats the first one's entries
        ids = [f"e{n}-{k}" for k in range(PAGE)] if n < 2 else [f"e0-{k}" for k in range(PAGE)]
        return page_of(server, n, ids, 1000, n + 1)

    server = serve(page)
    batch, messages, folder = fetch_all(server, tmp_path)
    assert len(server.requests) == 3 and len(batch.candidates) == 2 * PAGE
    assert len(messages) == 1 and "page 3 holds only entries already read" in messages[0]
    assert len(list(folder.glob("page-*"))) == 2  # the repeated page is not kept


def test_more_pages_than_data_returned_announces_stops_the_fetch(serve, tmp_path):
    announced = 4 * PAGE  # four pages' worth; the server never stops sending new entries

    def page(server, n):
        return page_of(server, n, [f"e{n}-{k}" for k in range(PAGE)], announced, n + 1)

    server = serve(page)
    batch, messages, _ = fetch_all(server, tmp_path)
    allowed = 4 + MIN_SLACK_PAGES
    assert len(server.requests) == allowed + 1  # the page past the limit is read, not kept
    assert len(batch.candidates) == allowed * PAGE
    assert len(messages) == 1 and f"more than {allowed} pages" in messages[0]


def test_a_loop_cached_by_an_older_version_is_cut_off_not_resumed(serve, tmp_path):
    def page(server, n):
        return page_of(server, n, [f"e{n % 2}-{k}" for k in range(PAGE)], 100, n + 1)

    server = serve(page)
    fetch = OptimadeFetch(
        f"optimade:{server.url}",
        tmp_path,
        OptimadeQuery(elements=None, page_limit=PAGE),
        RetryPolicy(retries=0),
    )
    _, _, folder = fetch.plan()
    # what the unguarded fetch left behind: 40 pages alternating between two, not complete
    for n in range(40):
        write_json_gz_atomic(folder / f"page-{n:06d}.json.gz", page(server, n)["data"])
    fields = fetch.served_fields()
    state = {
        "url": fetch.structures_url,
        "query": _query_key(fetch.query),
        "stability": fields.stability,
        "band_gap": fields.band_gap,
        "pages": 40,
        "next": server.link(40),
        "total": 100,
        "page_size": PAGE,
        "complete": False,
    }
    _write_state(folder / "state.json", state)
    batch, messages, _ = fetch_all(server, tmp_path)
    assert server.requests == [] and len(batch.candidates) == 2 * PAGE
    assert len(messages) == 1 and "page 3 holds only entries already read" in messages[0]
    assert len(list(folder.glob("page-*"))) == 2
    assert json.loads((folder / "state.json").read_text())["complete"]


def trickle(headers_first: bool, pause: float = 0.1):
    """An answer that sends one byte every ``pause`` s (after the headers, or within them)."""

    def answer(handler: Handler) -> None:
        try:
            if headers_first:
                handler.send_response(200)
                handler.send_header("Content-Length", "100000")
                handler.end_headers()
            else:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not handler.server.closing.wait(pause):
                handler.wfile.write(b"a" if not headers_first else b" ")
                handler.wfile.flush()
        except OSError:
            pass

    return answer


@pytest.mark.parametrize("headers_first", [True, False], ids=["body", "headers"])
def test_a_trickling_server_is_cut_off_by_the_deadline_per_request(serve, tmp_path, headers_first):
    server = serve(lambda server, n: trickle(headers_first))
    retry = RetryPolicy(retries=1, backoff=0.0, timeout=5.0, deadline=1.0, sleep=lambda s: None)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"after 2 attempts: .*within 1 s"):
        fetch_all(server, tmp_path, retry)
    assert time.monotonic() - started < 4.0  # two attempts of 1 s, not 5 s reads for ever
    assert len(server.requests) == 2


def test_a_body_that_stalls_past_the_read_timeout_is_a_transient_failure(serve, tmp_path):
    server = serve(lambda server, n: trickle(True, pause=60.0))
    retry = RetryPolicy(retries=1, backoff=0.0, timeout=0.3, deadline=30.0, sleep=lambda s: None)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"after 2 attempts: ReadTimeoutError"):
        fetch_all(server, tmp_path, retry)
    assert time.monotonic() - started < 5.0 and len(server.requests) == 2


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "streamed"])
def test_a_page_over_the_byte_cap_is_an_error_at_once(serve, tmp_path, announced):
    def answer(handler: Handler) -> None:
        body = json.dumps({"data": [entry("x")] * 2000}).encode()  # about 6 MB
        handler.send_response(200)
        if announced:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = serve(lambda server, n: answer)
    retry = RetryPolicy(retries=3, max_bytes=2**20, sleep=lambda s: None)
    with pytest.raises(SourceError, match=r"larger than the 1 MiB cap per page"):
        fetch_all(server, tmp_path, retry)
    assert len(server.requests) == 1  # not retried


HOSTILE = "\x1b[2J\x1b[H\x1b]0;pwned\x07[bold red]FAKE[/bold red] bad filter\r\n" + "A" * 100_000


def test_safe_text_strips_escapes_and_control_characters_and_cuts():
    text = safe_text(HOSTILE)
    assert "\x1b" not in text and "\r" not in text and "\n" not in text and "pwned" not in text
    assert text.startswith("[bold red]FAKE[/bold red] bad filter AAA")
    assert re.search(r"A\.\.\. \(99\d{3} more characters\)$", text) and len(text) < 340


@pytest.mark.slow
def test_a_server_error_text_is_printed_sanitised_escaped_and_cut(serve, tmp_path):
    def answer(handler: Handler) -> None:
        handler.send_json({"errors": [{"status": "400", "detail": HOSTILE}]}, status=400)

    server = serve(lambda server, n: answer)
    code = CLI
    env = {**os.environ, "ANISOSCREEN_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    env.pop("ANISOSCREEN_DEBUG", None)
    out = subprocess.run(
        [sys.executable, "-c", code, "run-screen", "--source", f"optimade:{server.url}"]
        + ["--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "\x1b" not in out.stderr and "pwned" not in out.stderr
    assert "[bold red]FAKE[/bold red] bad filter" in out.stderr  # markup shown, not obeyed
    assert len(out.stderr) < 1000 and "more characters" in out.stderr

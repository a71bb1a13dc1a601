"""A MongoDB password in the store setting never reaches the terminal (issue 24, item 5).

A password is planted in ``ANISOSCREEN_STORE`` (in the URI's user info and in an option of its
query string) and every command that prints the store location is run through the console
entry point, in this process; the server does not exist, so each one fails as one line with
the store exit status. ``serve`` prints the location before it connects.
"""

from __future__ import annotations

import socket
import sys

import pytest

from anisoscreen.errors import ExitCode
from anisoscreen.settings import get_settings, redact_store

SECRET = "Pl4nted-S3cret"
KEY_SECRET = "Key-Pa55word"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def planted(monkeypatch):
    port = _closed_port()
    uri = (
        f"mongodb://alice:{SECRET}@127.0.0.1:{port}/results"
        f"?authSource=admin&tlsCertificateKeyFilePassword={KEY_SECRET}"
    )
    monkeypatch.setenv("ANISOSCREEN_STORE", uri)
    monkeypatch.setenv("ANISOSCREEN_SERVER_TIMEOUT", "0.5")
    monkeypatch.setenv("COLUMNS", "250")
    return port


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from anisoscreen.cli import main

    monkeypatch.setattr(sys, "argv", ["anisoscreen", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("mongodb://u:pw@db.example:27017/x?authSource=admin", "mongodb://***@db.example:27017/x"),
        ("mongodb+srv://u:p%40ss@cluster.example/x", "mongodb+srv://***@cluster.example/x"),
        ("mongodb://u:a@b@host/x", "mongodb://***@host/x"),  # an unescaped '@' in the password
        ("mongodb://host:1/x?password=pw", "mongodb://host:1/x"),
        ("memory", "memory"),
    ],
)
def test_redacted_store_setting(uri, shown):
    assert redact_store(uri) == shown
    settings = get_settings(store=uri)
    assert settings.store_location == shown
    assert "pw" not in str(settings.describe()) and "p%40ss" not in str(settings.describe())


@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["run-screen", "--source", "bundled"],
        ["query"],
        ["query", "--failed"],
        ["table"],
        ["plot", "histogram", "--output", "x.png"],
        ["report", "--html", "x.html"],
        ["campaign", "status", "c1"],
        ["campaign", "step", "c1"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_no_command_prints_the_store_password(planted, monkeypatch, capsys, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert SECRET not in out + err and KEY_SECRET not in out + err
    assert code == ExitCode.STORE, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{planted}" in lines[0], err


def test_serve_shows_the_redacted_location_and_one_line_on_an_unreachable_store(
    planted, monkeypatch, capsys
):
    code, out, err = run_main(monkeypatch, capsys, "serve", "--port", str(_closed_port()))
    assert SECRET not in out + err and KEY_SECRET not in out + err
    assert code == ExitCode.STORE
    first, error = err.strip().splitlines()  # the location, then the error: no traceback
    assert first.startswith(f"serving mongodb://***@127.0.0.1:{planted}/results on http://")
    assert error.startswith("error: MongoDB at 127.0.0.1") and "did not answer" in error

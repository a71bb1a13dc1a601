"""One convention for the whole CLI, checked on every command's ``--help``, and the exit codes.

Conventions (docs/guide/configuration.md, "Command-line conventions"): every option has help
text; a flag shows no value placeholder (``--dry-run``, never ``--dry-run <bool>``); one idea
has one name everywhere (``--validated``, ``--limit``); "no match" is exit status 1 for every
command that lists candidates; every exit status of the documented table is what the
failure it names returns.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import typer.main
from cli_helpers import CLI
from typer.testing import CliRunner

from anisoscreen.cli import app
from anisoscreen.errors import (
    EXIT_CODE_MEANINGS,
    AnisoscreenError,
    ExitCode,
    exit_code_help,
)


def _commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    yield path, command
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


COMMANDS = [path for path, _ in _commands() if path]


def _options(command):
    return [p for p in command.params if type(p).__name__ == "TyperOption"]


def test_every_command_is_walked():
    assert {("run-screen",), ("validations", "import"), ("campaign", "simulate")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_text_for_every_option_and_no_flag_metavar(path):
    command = dict(_commands())[path]
    missing = [p.opts for p in _options(command) if not (p.help or "").strip()]
    assert not missing, f"options without help text: {missing}"
    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "<bool>" not in out.output  # flags take no value, so they show none


def test_one_name_per_idea():
    names: dict[str, set[str]] = {}
    for _, command in _commands():
        for option in _options(command):
            for opt in option.opts:
                names.setdefault(opt, set()).add(option.name)
    assert "--validated-only" not in names  # `--validated`, as in query
    limits = {
        (option.help or "")
        for _, command in _commands()
        for option in _options(command)
        if "--limit" in option.opts
    }
    assert limits and all("0: all" in text for text in limits), limits


def test_exit_code_table_is_complete_and_in_help():
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)
    text = exit_code_help()
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert f"{int(code)}: {meaning}" in text

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for error in (AnisoscreenError, *subclasses(AnisoscreenError)):
        assert error.exit_code in EXIT_CODE_MEANINGS, error


def _run(*args, env=None):
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, env=env
    )
    return out, time.perf_counter() - start


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--version"], ExitCode.OK),
        (["predict", "{tmp}/missing.cif", "-o", "{tmp}/p.jsonl"], ExitCode.USAGE),
        (["table", "--data-dir", "{tmp}/d"], ExitCode.USAGE),  # no match
        (["query", "--data-dir", "{tmp}/d"], ExitCode.USAGE),  # no match, the same status
        (["run-screen", "--no-such-option"], ExitCode.CLI_SYNTAX),
        (["--config", "{tmp}/missing.yaml", "info"], ExitCode.CONFIG),
        (["query", "--store", "{tmp}/garbage.yaml"], ExitCode.CONFIG),
        (["validations", "import", "{tmp}/missing"], ExitCode.SOURCE),
        (
            ["run-screen", "--source", "{tmp}/missing.json", "--data-dir", "{tmp}/d"],
            ExitCode.SOURCE,
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(int(v)),
)
def test_failures_exit_with_their_documented_status(tmp_path, args, code):
    (tmp_path / "garbage.yaml").write_text("not: [a, store")
    out, _ = _run(*[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == code, out.stdout + out.stderr
    if code != ExitCode.OK:
        assert len(out.stderr.strip().splitlines()) >= 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "{tmp}/missing.cif", "-o", "{tmp}/p.jsonl"],
        ["validations", "import", "{tmp}/missing.json"],
        ["campaign", "simulate", "--labels", "{tmp}/missing.json", "-o", "{tmp}/s.json"],
        ["run-screen", "--source", "{tmp}/missing.json"],
    ],
    ids=lambda v: " ".join(v[:2]),
)
def test_a_missing_input_is_reported_before_the_heavy_imports(tmp_path, args):
    code = (
        "import sys, time; t = time.perf_counter(); from anisoscreen.cli import main; "
        "sys.argv[0] = 'anisoscreen'\n"
        "try:\n    main()\nfinally:\n"
        "    print('torch' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *[a.format(tmp=tmp_path) for a in args]],
        capture_output=True,
        text=True,
    )
    assert out.returncode in (ExitCode.USAGE, ExitCode.SOURCE), out.stderr
    assert re.search(r"not (found|exist)", out.stderr), out.stderr
    assert out.stderr.strip().splitlines()[-1] == "False"  # no torch before the check

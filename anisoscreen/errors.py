"""Exceptions that mean "the user asked for something that cannot be done", and exit codes.

The CLI prints these as one line (what failed and what to do) and exits with the error class's
documented status (:class:`ExitCode`), without a traceback unless ``--debug`` or
``ANISOSCREEN_DEBUG=1``; anything else is a bug and is reported as one line with exit status
``INTERNAL`` (the traceback again with ``--debug``).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AnisoscreenError",
    "AnisoscreenWarning",
    "ConfigError",
    "ExitCode",
    "FailedRecordsError",
    "SourceError",
    "StageError",
    "StoreError",
    "exit_code_help",
]


class ExitCode(IntEnum):
    """Exit status of ``anisoscreen`` per failure class (listed in ``anisoscreen --help``)."""

    OK = 0
    USAGE = 1
    CLI_SYNTAX = 2
    FAILED_RECORDS = 3
    CONFIG = 4
    STORE = 5
    SOURCE = 6
    STAGE = 7
    INTERNAL = 70
    INTERRUPTED = 130


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.USAGE: "invalid input or request (a missing file or model, a bad option value, "
    "no match)",
    ExitCode.CLI_SYNTAX: "the command line does not parse (unknown option, missing argument)",
    ExitCode.FAILED_RECORDS: "finished, but some records failed (they are listed)",
    ExitCode.CONFIG: "invalid configuration (config file, ANISOSCREEN_* variable, store file)",
    ExitCode.STORE: "the results store is unreachable, locked, read-only (for a write) or corrupt",
    ExitCode.SOURCE: "the candidate source cannot be read (missing path, MP unreachable)",
    ExitCode.STAGE: "a screening stage failed (the cause is printed)",
    ExitCode.INTERNAL: "a bug: rerun with --debug and report the traceback",
    ExitCode.INTERRUPTED: "interrupted; what was stored before stays stored",
}
"""What each exit status means (shown by ``anisoscreen --help``)."""


def exit_code_help() -> str:
    """The exit-code table for ``--help`` (one line per code)."""
    rows = [f"{int(code)}: {EXIT_CODE_MEANINGS[code]}" for code in sorted(EXIT_CODE_MEANINGS)]
    return "Exit status: " + "  ·  ".join(rows)


class AnisoscreenError(Exception):
    """Base class of errors caused by input or configuration, not by a bug."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(AnisoscreenError, ValueError):
    """A configuration value, file or store description is invalid."""

    exit_code = ExitCode.CONFIG


class StoreError(AnisoscreenError):
    """The results store is unreachable, corrupt or cannot be written."""

    exit_code = ExitCode.STORE


class SourceError(AnisoscreenError):
    """The candidate source cannot be read."""

    exit_code = ExitCode.SOURCE


class StageError(AnisoscreenError):
    """A screening stage failed; the message names the stage and the cause."""

    exit_code = ExitCode.STAGE


class FailedRecordsError(AnisoscreenError):
    """Some records failed; everything else was done and stored."""

    exit_code = ExitCode.FAILED_RECORDS


class AnisoscreenWarning(UserWarning):
    """Something the user should know about their input that does not stop the run."""

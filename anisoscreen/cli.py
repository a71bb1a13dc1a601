"""``anisoscreen`` command line: parses arguments and calls the package; no science here.

User errors (:class:`anisoscreen.errors.AnisoscreenError`) print one red line and exit with
their class's status (:class:`anisoscreen.errors.ExitCode`, listed in ``--help``); other
exceptions are reported as one line too, exit status 70. ``--debug`` or ``ANISOSCREEN_DEBUG=1``
adds the traceback. Heavy libraries are imported inside commands so that
``anisoscreen --version`` stays instant.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from anisoscreen import __version__
from anisoscreen.commands.common import (
    DataDirOption,
    StoreOption,
    console,
    err_console,
    settings_from_options,
)
from anisoscreen.errors import AnisoscreenError, AnisoscreenWarning, ExitCode, exit_code_help
from anisoscreen.safe_text import safe_text

DEBUG_ENV = "ANISOSCREEN_DEBUG"

app = typer.Typer(
    name="anisoscreen",
    help="Screen crystals for strongly anisotropic dielectric response.",
    epilog=exit_code_help(),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _no_flag_metavar(original):
    """Typer shows ``<bool>`` after a flag, which takes no value: show nothing instead."""

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    return display_type_rich


typer.core.TyperOption.display_type_rich = _no_flag_metavar(  # type: ignore[method-assign]
    typer.core.TyperOption.display_type_rich
)


def _version(value: bool) -> None:
    if value:
        console.print(f"anisoscreen {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    config: Annotated[
        str | None,
        typer.Option("--config", help="YAML config file (overrides ANISOSCREEN_CONFIG)."),
    ] = None,
    debug: Annotated[
        bool,
        typer.Option("--debug", help=f"Show tracebacks of errors (or set {DEBUG_ENV}=1)."),
    ] = False,
) -> None:
    """Screen crystals for strongly anisotropic dielectric response."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if config is not None:
        from anisoscreen.settings import CONFIG_ENV

        os.environ[CONFIG_ENV] = config


@app.command()
def info(store: StoreOption = None, data_dir: DataDirOption = None) -> None:
    """Show versions, compute device, store location and counts, and the default model."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from anisoscreen.store import ResultsStore

    settings = settings_from_options(store, data_dir)
    table = Table(title=f"anisoscreen {__version__}", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    for package in (
        "torch",
        "e3nn",
        "pymatgen",
        "jobflow",
        "jobflow-remote",
        "atomate2",
        "maggma",
        "mp-api",
    ):
        try:
            table.add_row(package, version(package))
        except PackageNotFoundError:
            table.add_row(package, "not installed")
    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    table.add_row("device", f"{device} ({torch.get_num_threads()} CPU threads)")
    from anisoscreen.model.nn.edge_tp import cpu_fused as fused

    table.add_row("CPU edge tensor product", fused.describe())
    with ResultsStore(settings) as results:
        table.add_row("store", results.location)
        for name, count in results.counts().items():
            table.add_row(f"  {name}", str(count))
    table.add_row("default model", _describe_model(settings))
    table.add_row("config file", settings.describe()["config_file"])
    table.add_row("shared data", str(settings.shared))
    table.add_row("MP API key", settings.describe()["mp_api_key"])
    console.print(table)


def _describe_model(settings) -> str:
    from anisoscreen.model.checkpoint import resolve_model_path

    try:
        path = resolve_model_path(settings.model, settings.data_dir)
    except AnisoscreenError as exc:
        return f"{settings.model} (missing: {exc})"
    return f"{settings.model} ({path})"


def _register_commands() -> None:
    from anisoscreen.commands import campaign as campaign_commands
    from anisoscreen.commands import hpc as hpc_commands
    from anisoscreen.commands import model as model_commands
    from anisoscreen.commands import report as report_commands
    from anisoscreen.commands import screen as screen_commands
    from anisoscreen.commands import store as store_commands
    from anisoscreen.commands import validations as validation_commands
    from anisoscreen.commands import web as web_commands

    for module in (
        model_commands,
        screen_commands,
        hpc_commands,
        report_commands,
        web_commands,
        campaign_commands,
        store_commands,
        validation_commands,
    ):
        module.register(app)


_register_commands()


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _one_line(exc: BaseException) -> str:
    """The message on one line, without control characters, and safe from rich markup."""
    return escape(safe_text(exc, limit=4000)) or type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings about the user's input as one ``warning:`` line; others as Python prints them."""
    if issubclass(category, AnisoscreenWarning) and not _debug():
        err_console.print(
            f"[yellow]warning:[/yellow] {escape(safe_text(message, limit=4000))}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = __import__("warnings").showwarning


def main() -> None:
    """Console entry point: every failure ends as one line and a documented exit status."""
    import warnings

    from typer.exceptions import TyperException

    warnings.filterwarnings("ignore", category=FutureWarning, module="jobflow")
    warnings.showwarning = _show_warning
    try:
        status = app(standalone_mode=False)
    except typer.Exit as exc:
        status = exc.exit_code
    except TyperException as exc:  # a command line that does not parse
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err_console.print(f"error: {_one_line(exc)}", highlight=False, soft_wrap=True)
        status = exc.exit_code
    except (typer.Abort, KeyboardInterrupt) as exc:
        if isinstance(exc.__cause__, EOFError):  # click turns any EOFError into an abort
            status = _report_bug(exc.__cause__)
        else:
            err_console.print("interrupted; what was stored before stays stored", highlight=False)
            status = ExitCode.INTERRUPTED
    except AnisoscreenError as exc:
        if _debug():
            err_console.print_exception()
        err_console.print(f"[red]error:[/red] {_one_line(exc)}", highlight=False, soft_wrap=True)
        status = exc.exit_code
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        status = _report_bug(exc)
    sys.exit(int(status or 0))


def run() -> None:
    """The ``anisoscreen`` command: :func:`main`, then an exit that skips interpreter teardown.

    The command collects garbage less often (:mod:`anisoscreen.gc_thresholds`). The teardown
    that torch makes slow is skipped; the threads a normal exit waits for and the exit
    handlers still run first (:func:`anisoscreen.process_end.end_process`). :func:`main`
    itself raises ``SystemExit``.
    """
    from anisoscreen.gc_thresholds import set_command_thresholds
    from anisoscreen.process_end import end_process

    set_command_thresholds()
    status = 0
    try:
        main()
    except SystemExit as exc:  # main ends by sys.exit with an integer status
        status = int(exc.code or 0)
    end_process(status)


def _report_bug(exc: BaseException) -> ExitCode:
    """One ``internal error`` line (the traceback too in debug mode)."""
    if _debug():
        err_console.print("".join(traceback.format_exception(exc)), highlight=False, markup=False)
    err_console.print(
        f"[red]internal error:[/red] {type(exc).__name__}: {_one_line(exc)} "
        f"(a bug; rerun with --debug or {DEBUG_ENV}=1 for the traceback and report it)",
        highlight=False,
        soft_wrap=True,
    )
    return ExitCode.INTERNAL

"""``anisoscreen`` command line: parses arguments and calls the package; no science here.

User errors (:class:`anisoscreen.errors.AnisoscreenError`) print one red line and exit with
status 1, without a traceback. Heavy libraries are imported inside commands so that
``anisoscreen --version`` stays instant.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from anisoscreen import __version__
from anisoscreen.commands.common import (
    DataDirOption,
    StoreOption,
    console,
    err_console,
    settings_from_options,
)
from anisoscreen.errors import AnisoscreenError

app = typer.Typer(
    name="anisoscreen",
    help="Screen crystals for strongly anisotropic dielectric response.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
) -> None:
    """Screen crystals for strongly anisotropic dielectric response."""


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
    from anisoscreen.model import fused

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

    for module in (
        model_commands,
        screen_commands,
        hpc_commands,
        report_commands,
        campaign_commands,
    ):
        module.register(app)


_register_commands()


def main() -> None:
    """Console entry point: run the app, turning user errors into one clear line."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="jobflow")
    try:
        app()
    except AnisoscreenError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)

"""``anisoscreen serve`` (the results browser) and ``anisoscreen report --html`` (one file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anisoscreen.commands.common import (
    DataDirOption,
    StoreOption,
    err_console,
    settings_from_options,
)
from anisoscreen.commands.query_options import QueryOptions, query_options
from anisoscreen.errors import AnisoscreenError

__all__ = ["register"]


def serve(
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Interface to bind; 0.0.0.0 exposes the server to the network."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.0, help="Re-read the store after this many seconds.")
    ] = 30.0,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Also answer requests for this host name (repeatable; '*' allows any). "
            "By default only the bind address (and localhost on loopback) is accepted.",
        ),
    ] = None,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Browse the results store: REST API (/api, docs at /docs) and web pages (read-only)."""
    from anisoscreen.web import serve as run_server

    settings = settings_from_options(store, data_dir)
    typer.echo(
        f"serving {settings.store_location} on http://{host}:{port}/ (Ctrl-C stops)", err=True
    )
    run_server(settings, host=host, port=port, refresh_s=refresh, allow_hosts=allow_host or ())


def report(
    html: Annotated[
        Path, typer.Option("--html", help="Write a self-contained HTML report to this file.")
    ],
    top: Annotated[
        int, typer.Option("--top", "-n", min=0, help="Candidates in the table and cards (0: all).")
    ] = 50,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "anisoscreen report",
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    *,
    filters: QueryOptions,
) -> None:
    """One HTML file (inline figures and styles, no network) of the overview and top candidates."""
    from anisoscreen.query import find_candidates
    from anisoscreen.report.figures import training_anisotropy_ratios
    from anisoscreen.report.html import write_html_report
    from anisoscreen.schemas import ScreeningRunDoc
    from anisoscreen.store import ResultsStore

    query = filters.to_query()
    settings = settings_from_options(store, data_dir)
    with ResultsStore(settings) as results:
        rows = find_candidates(results, query)
        runs = results.query(ScreeningRunDoc)
        location = results.location
    if not rows:
        raise AnisoscreenError(
            f"no candidates in the store {location} match ({query.describe()}); "
            "run the screening (anisoscreen run-screen) first"
        )
    try:
        training = training_anisotropy_ratios(shared=settings.shared).tolist()
    except AnisoscreenError:
        training = None
    from anisoscreen.commands.progress import progress

    with progress("figures and cards", err_console) as report:
        path = write_html_report(
            html,
            rows,
            runs=runs,
            top=top,
            training_ratios=training,
            title=title,
            store=location,
            query=query.describe(),
            progress=report,
        )
    shown = min(top, len(rows)) if top else len(rows)
    typer.echo(f"wrote {path} ({shown} of {len(rows)} candidates)", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` and ``report`` commands to ``app``."""
    app.command("serve")(serve)
    app.command("report")(query_options(report))

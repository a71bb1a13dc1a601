"""``anisoscreen submit / status / collect / rerun / hpc-config``: HPC through jobflow-remote.

Only argument parsing and printing; the work is in :mod:`anisoscreen.hpc`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from anisoscreen.commands.common import DataDirOption, StoreOption, console, settings_from_options
from anisoscreen.errors import AnisoscreenError

if TYPE_CHECKING:
    from jobflow import Flow

    from anisoscreen.settings import AnisoscreenSettings

__all__ = ["register"]

ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="jobflow-remote project (default: $JFREMOTE_PROJECT or the only project).",
    ),
]


def _split_ids(ids: list[str] | None) -> list[str] | None:
    if not ids:
        return None
    out = [part.strip() for value in ids for part in value.split(",") if part.strip()]
    return out or None


def submit(
    what: Annotated[
        str, typer.Argument(help="'validation' (DFT of stored candidates) or 'screening'.")
    ] = "validation",
    ids: Annotated[
        list[str] | None,
        typer.Option("--ids", help="Material ids (repeat or comma-separate)."),
    ] = None,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="The k highest predicted a_r.")
    ] = None,
    ar_min: Annotated[
        float | None, typer.Option("--ar-min", help="Only predicted a_r >= this value.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Use the predictions of this model only.")
    ] = None,
    optics: Annotated[
        bool, typer.Option("--optics", help="Add the LOPTICS optical-spectra calculation.")
    ] = False,
    project: ProjectOption = None,
    worker: Annotated[
        str | None,
        typer.Option(
            "--worker", "-w", help="Worker (default: 'vasp' for validation, 'gpu' for screening)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be submitted, submit nothing.")
    ] = False,
    source: Annotated[
        str, typer.Option("--source", help="Screening: candidate source (bundled, mp, a path).")
    ] = "bundled",
    validate: Annotated[
        bool,
        typer.Option("--validate", help="Screening: append DFT validation of the top candidates."),
    ] = False,
    shard_size: Annotated[
        int | None,
        typer.Option(
            "--shard-size",
            min=1,
            help="Screening: candidates per prediction job (shards run in parallel).",
        ),
    ] = None,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Submit validation flows for stored candidates (or the screening flow) to a worker.

    A candidate already validated, or with jobs in the queue, is skipped with the reason.
    'submit screening' sends the whole campaign (to the 'gpu' worker by default);
    with --validate it appends validation flows for a_r >= --ar-min (default 2.5) or --top-k.
    """
    from anisoscreen.hpc.submit import submit_screening, submit_validations

    settings = settings_from_options(store, data_dir)
    if what == "screening":
        flow = _screening_flow(settings, source, model, validate, top_k, ar_min, optics, shard_size)
        report = submit_screening(flow, project=project, worker=worker)
    elif what == "validation":
        id_list = _split_ids(ids)
        if id_list is None and top_k is None and ar_min is None:
            raise AnisoscreenError("choose candidates with --ids, --top-k or --ar-min")
        report = submit_validations(
            settings,
            project=project,
            worker=worker,
            ids=id_list,
            top_k=top_k,
            ar_min=ar_min,
            model=model,
            optics=optics,
            dry_run=dry_run,
        )
    else:
        raise AnisoscreenError(f"unknown target {what!r}: use 'validation' or 'screening'")
    verb = "would submit" if dry_run else "submitted"
    for entry in report.submitted:
        label = entry["material_id"] or "flow"
        ids_text = ", ".join(map(str, entry["db_ids"])) or "-"
        console.print(f"{verb} {label}: flow {entry['flow_uuid']} (db ids {ids_text})")
    for mid, reason in report.skipped:
        console.print(f"skipped {mid}: {reason}", style="yellow")
    console.print(
        f"{len(report.submitted)} {verb}, {len(report.skipped)} skipped "
        f"(project {report.project}, worker {report.worker})"
    )


def _screening_flow(
    settings: AnisoscreenSettings,
    source: str,
    model: str | None,
    validate: bool,
    top_k: int | None,
    ar_min: float | None,
    optics: bool,
    shard_size: int | None = None,
) -> Flow:
    """The screening flow of :meth:`ScreeningMaker.from_settings`, optionally with validation."""
    from anisoscreen.screening.flows import ScreeningMaker

    return ScreeningMaker.from_settings(
        settings,
        optics=optics,
        source=source,
        model=model,
        validate=validate,
        top_k=top_k if validate else None,
        ar_threshold=ar_min if validate else None,
        shard_size=shard_size,
    ).make()


def status(
    project: ProjectOption = None,
    all_jobs: Annotated[
        bool, typer.Option("--all", help="Count every job of the project, not only anisoscreen's.")
    ] = False,
) -> None:
    """Job counts per state, and the failed jobs with their reason."""
    from anisoscreen.hpc.config import FAILED_STATES
    from anisoscreen.hpc.queue import queue_status

    report = queue_status(project, anisoscreen_only=not all_jobs)
    table = Table(title=f"jobs in project {report.project}")
    table.add_column("state")
    table.add_column("jobs", justify="right")
    for state, count in report.counts.items():
        table.add_row(state, str(count), style="red" if state in FAILED_STATES else None)
    table.add_row("total", str(report.total), style="bold")
    console.print(table)
    if report.failed:
        failed = Table(title="failed jobs (rerun with `anisoscreen rerun`)")
        for column in ("db id", "job", "material", "state", "reason"):
            failed.add_column(column)
        for job in report.failed:
            failed.add_row(job.db_id, job.name, job.material_id or "-", job.state, job.reason)
        console.print(failed)


def collect(
    project: ProjectOption = None, store: StoreOption = None, data_dir: DataDirOption = None
) -> None:
    """Pull finished validation outputs (and failures) into the results store."""
    from anisoscreen.hpc.queue import collect as collect_validations

    report = collect_validations(settings_from_options(store, data_dir), project)
    for doc in report.collected:
        ar = f"{doc.anisotropy_ratio:.4f}" if doc.anisotropy_ratio is not None else "-"
        note = f" flags: {'; '.join(doc.flags)}" if doc.flags else ""
        console.print(f"{doc.material_id} {doc.calc_type}: {doc.state.value}, a_r = {ar}{note}")
    for doc in report.failed:
        console.print(f"{doc.material_id} {doc.calc_type}: failed: {doc.error}", style="red")
    console.print(
        f"{len(report.collected)} collected, {len(report.failed)} failed, "
        f"{report.pending} still running or waiting"
    )


def rerun(
    db_ids: Annotated[
        list[str] | None, typer.Argument(help="db ids to rerun (default: every failed job).")
    ] = None,
    project: ProjectOption = None,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Put failed jobs back in the queue (the Runner picks them up again)."""
    from anisoscreen.hpc.queue import rerun_failed

    done = rerun_failed(settings_from_options(store, data_dir), project, db_ids or None)
    console.print(
        f"{len(done)} job(s) back in the queue" + (f": {', '.join(done)}" if done else "")
    )


def hpc_config(
    name: Annotated[str, typer.Option("--name", help="Project name.")] = "anisoscreen",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: projects folder).")
    ] = None,
    queue_uri: Annotated[
        str, typer.Option("--queue-uri", help="MongoDB URI of jobflow-remote's queue.")
    ] = "mongodb://localhost:27017",
    work_dir: Annotated[
        Path, typer.Option("--work-dir", help="Absolute run folder on the cluster.")
    ] = Path("~/anisoscreen_runs"),
    host: Annotated[
        str | None, typer.Option("--host", help="SSH host of the cluster (omit on the cluster).")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="SSH user.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write a filled-in jobflow-remote project (GPU + VASP workers, anisoscreen's store)."""
    from anisoscreen.hpc.config import write_project_config

    path = write_project_config(
        output,
        overwrite=force,
        name=name,
        settings=settings_from_options(store, data_dir),
        queue_uri=queue_uri,
        work_dir=work_dir.expanduser(),
        host=host,
        user=user,
    )
    console.print(f"wrote {path}; edit resources / pre_run, then run `jf project check -e`")


def register(app: typer.Typer) -> None:
    """Add ``submit``, ``status``, ``collect``, ``rerun`` and ``hpc-config`` to ``app``."""
    app.command()(submit)
    app.command()(status)
    app.command()(collect)
    app.command()(rerun)
    app.command("hpc-config")(hpc_config)

"""``run-screen``: the screening campaign run locally with jobflow on the configured store."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated

import typer

from anisoscreen.commands.common import (
    ArMaxOption,
    ArMinOption,
    DataDirOption,
    DescendingOption,
    DimensionalityOption,
    ElementsOption,
    ExcludeElementsOption,
    LimitOption,
    ModelOption,
    SortOption,
    StoreOption,
    build_query,
    console,
    settings_from_options,
)
from anisoscreen.errors import AnisoscreenError

STAGES = {"fetch": "fetching pages", "predict": "predicting", "rank": "dimensionality"}


def register(app: typer.Typer) -> None:
    """Add the screening commands to ``app``."""
    app.command("run-screen")(run_screen)
    app.command("query")(query)


def store_overrides(settings) -> dict:
    """The settings a job needs to rebuild the same results store (JSON-serialisable)."""
    return {
        "store": settings.store,
        "data_dir": str(settings.data_dir),
        "database": settings.database,
        "collection_prefix": settings.collection_prefix,
    }


def run_screen(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="bundled (default), mp, optimade:URL, optimade:NAME (alexandria, oqmd, ...), "
            "or a path: a JSON(.gz) list of MP-like docs, a structure file or a folder.",
        ),
    ] = "bundled",
    store: Annotated[
        str | None, typer.Option("--store", help="Results store (default: embedded).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder of the embedded store.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name or checkpoint path.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    ar_threshold: Annotated[
        float, typer.Option("--ar-threshold", help="Validate candidates with a_r above this.")
    ] = 2.5,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Validate the k highest-a_r candidates instead.")
    ] = None,
    validate: Annotated[
        bool, typer.Option("--validate", help="Append DFT validation flows for the selection.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Load and filter only; write nothing.")
    ] = False,
    max_hull: Annotated[float, typer.Option("--max-e-above-hull", help="eV/atom.")] = 0.050,
    min_gap: Annotated[float, typer.Option("--min-band-gap", help="eV.")] = 0.5,
    max_sites: Annotated[int, typer.Option("--max-sites", help="Keep fewer sites than this.")] = 40,
    processes: Annotated[
        int | None, typer.Option("--processes", help="Cores for dimensionality.")
    ] = None,
    include_known: Annotated[
        bool,
        typer.Option("--include-known", help="Keep materials that already have MP DFPT data."),
    ] = False,
    describe_top: Annotated[
        int, typer.Option("--describe-top", help="robocrys descriptions for the top N (~2 s each).")
    ] = 0,
) -> None:
    """Screen a pool of structures: filter, predict eps_inf, rank by a_r, store everything."""
    from jobflow import run_locally
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from anisoscreen import jobs
    from anisoscreen.candidates.filters import ScreeningCriteria
    from anisoscreen.flows import ScreeningMaker
    from anisoscreen.store import build_job_store

    settings = settings_from_options(
        store, data_dir, model=model, device=device, batch_size=batch_size
    )
    criteria = ScreeningCriteria(
        max_energy_above_hull=max_hull,
        min_band_gap=min_gap,
        max_sites=max_sites,
        exclude_known_dielectrics=not include_known,
    )
    if dry_run:
        _dry_run(source, criteria, settings, console)
        return
    validation_maker = None
    if validate:
        validation_maker = _validation_maker()

    maker = ScreeningMaker(
        source=source,
        criteria=criteria,
        model=settings.model,
        device=settings.device,
        batch_size=settings.batch_size,
        processes=processes,
        describe_top=describe_top,
        store=store_overrides(settings),
        validate=validate,
        ar_threshold=ar_threshold,
        top_k=top_k,
        validation_maker=validation_maker,
    )
    run_id = str(uuid.uuid4())
    flow = maker.make(run_id)
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description:>16}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, advance: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], advance=advance, total=total)

        jobs.set_progress_reporter(report)
        try:
            responses = run_locally(
                flow, store=build_job_store(settings), create_folders=False, log=False
            )
        finally:
            jobs.set_progress_reporter(None)
    record = responses.get(flow.jobs[3].uuid, {})
    if not record:
        raise AnisoscreenError("the screening flow failed; see the messages above")
    run_doc = next(iter(record.values())).output
    ranking = next(iter(responses[flow.jobs[2].uuid].values())).output
    _summary(console, run_doc, ranking, time.perf_counter() - start, settings)


def _validation_maker():
    try:
        from anisoscreen.validation.makers import ValidationMaker
    except ImportError as exc:  # pragma: no cover - validation package missing
        raise AnisoscreenError(f"validation is not available: {exc}") from exc
    return ValidationMaker()


def _dry_run(source, criteria, settings, console) -> None:
    from anisoscreen.jobs import filter_source

    _, batch, result = filter_source(source, criteria, settings.model, settings.data_dir)
    console.print(
        f"[bold]dry run[/bold]: {len(batch.candidates) + len(batch.failures)} structures "
        f"from {source}"
    )
    if batch.failures:
        console.print(f"  unreadable: {len(batch.failures)}")
    for name, count in result.removed_by.items():
        console.print(f"  removed by {result.descriptions[name]}: {count}")
    console.print(
        f"  would predict {len(result.kept)} candidates with {settings.model}; nothing written"
    )


def _summary(console, run_doc, ranking, seconds, settings) -> None:
    from rich.table import Table

    filters = Table(title=f"screening run {run_doc.run_id[:8]} ({run_doc.source})")
    filters.add_column("stage / criterion")
    filters.add_column("count", justify="right")
    filters.add_row("input structures", str(run_doc.n_input))
    for name, count in run_doc.removed_by.items():
        filters.add_row(f"  removed: {name}", str(count))
    filters.add_row("candidates", str(run_doc.n_candidates))
    filters.add_row("predicted now", str(run_doc.n_predicted))
    filters.add_row("already in store", str(run_doc.n_reused))
    filters.add_row("failed", str(run_doc.n_failed))
    console.print(filters)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in run_doc.timings.items())
    console.print(f"time per stage: {timings}; total {seconds:.1f} s")
    top = Table(title=f"top 10 by anisotropy ratio ({run_doc.model} {run_doc.model_version})")
    for column in ("material_id", "formula", "a_r", "eps_poly", "dim"):
        top.add_column(column)
    for row in ranking["ranking"][:10]:
        dim = row["dimensionality"]
        top.add_row(
            row["material_id"],
            row["formula"],
            f"{row['anisotropy_ratio']:.2f}",
            f"{row['eps_poly']:.2f}",
            "?" if dim is None else f"{int(dim)}D",
        )
    console.print(top)
    console.print(f"results in {settings.store} store; query them with `anisoscreen query`")


def query(
    ar_min: ArMinOption = None,
    ar_max: ArMaxOption = None,
    dimensionality: DimensionalityOption = None,
    elements: ElementsOption = None,
    exclude_elements: ExcludeElementsOption = None,
    model: ModelOption = None,
    validated: Annotated[
        bool, typer.Option("--validated", help="Only DFT-validated candidates.")
    ] = False,
    sort: SortOption = None,
    descending: DescendingOption = None,
    limit: LimitOption = 20,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="table, json or csv.")
    ] = "table",
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Query stored candidates: filter by a_r, dimensionality and elements, sort, print."""
    import csv
    import json
    import sys

    from anisoscreen.query import find_candidates
    from anisoscreen.store import ResultsStore

    if output_format not in ("table", "json", "csv"):
        raise AnisoscreenError("--format must be table, json or csv")
    request = build_query(
        ar_min=ar_min,
        ar_max=ar_max,
        dimensionality=dimensionality,
        elements=elements,
        exclude_elements=exclude_elements,
        model=model,
        validated_only=validated,
        sort=sort,
        descending=descending,
        limit=limit,
    )
    settings = settings_from_options(store, data_dir)
    with ResultsStore(settings) as results:
        rows = find_candidates(results, request)
    records = [row.summary() for row in rows]
    if output_format == "json":
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return
    if output_format == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(records[0]) if records else ["material_id"]
        )
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "elements": " ".join(record["elements"])})
        return
    if not rows:
        console.print(f"no candidates match ({request.describe()}) in {settings.store} store")
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} candidates ({request.describe()}), sorted by {request.sort}")
    for column in (
        "material_id",
        "formula",
        "a_r",
        "eps_poly",
        "dim",
        "E_hull (eV/at)",
        "gap (eV)",
        "source",
    ):
        table.add_column(column, no_wrap=column in ("material_id", "formula"))
    for row, record in zip(rows, records, strict=False):
        dim = record["dimensionality"]
        table.add_row(
            record["material_id"],
            record["formula"],
            f"{record['anisotropy_ratio']:.2f}",
            f"{record['eps_poly']:.2f}",
            "?" if dim is None else f"{dim}D",
            "" if record["energy_above_hull"] is None else f"{record['energy_above_hull']:.3f}",
            "" if record["band_gap"] is None else f"{record['band_gap']:.2f}",
            "DFPT" if row.validated else "predicted",
        )
    console.print(table)

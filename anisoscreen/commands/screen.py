"""``run-screen``: the screening campaign run locally with jobflow on the configured store."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from anisoscreen.commands.common import (
    DataDirOption,
    LimitOption,
    StoreOption,
    console,
    settings_from_options,
)
from anisoscreen.commands.query_options import QueryOptions, query_options
from anisoscreen.errors import AnisoscreenError

if TYPE_CHECKING:
    from anisoscreen.candidates.filters import ScreeningCriteria
    from anisoscreen.schemas import ScreeningRunDoc
    from anisoscreen.screening.ionic_refine import IonicRefineOutput
    from anisoscreen.screening.outputs import RankingStageOutput
    from anisoscreen.settings import AnisoscreenSettings

STAGES = {
    "fetch": "fetching pages",
    "predict": "predicting",
    "descriptors": "dimensionality",
    "refine": "refining eps0",
    "rank": "dimensionality (remaining)",
}


def register(app: typer.Typer) -> None:
    """Add the screening commands to ``app``."""
    app.command("run-screen")(run_screen)
    app.command("query")(query_options(query))


def _refinement_table(console: Console, refinement: IonicRefineOutput) -> None:
    """The refine stage's rows: which eps0 each uses, the totals, the strongest mode."""
    from rich.table import Table

    table = Table(
        title=f"refined top {len(refinement.refinements)} ({refinement.potential} Gamma force "
        f"constants, {refinement.born_source} Born charges)"
    )
    for column in ("#", "material", "formula", "eps0 from", "eps_total", "FOM", "FOM direct"):
        table.add_column(column)
    table.add_column("strongest mode (THz: share)")
    table.add_column("flags")

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for row in refinement.refinements:
        strongest = max(row.modes, key=lambda m: m.eps_contribution, default=None)
        mode = (
            f"{strongest.frequency_thz:.2f}: {strongest.eps_contribution:.2f}"
            if strongest is not None and strongest.eps_contribution > 0
            else "-"
        )
        table.add_row(
            str(row.rank + 1),
            row.material_id,
            row.formula,
            row.ionic_method,
            number(row.eps_total_poly),
            number(row.figure_of_merit),
            number(row.direct_figure_of_merit),
            mode,
            ", ".join(row.flags) or row.error or "",
        )
    console.print(table)


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
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Structures per model call (default: settings)."),
    ] = None,
    ar_threshold: Annotated[
        float | None,
        typer.Option(
            "--ar-threshold",
            help="Validate candidates with a_r >= this (default 2.5 when --top-k is not given).",
        ),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", help="Validate at most the k highest-a_r candidates."),
    ] = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate",
            help="Select candidates for DFT validation and say how to submit them (a local "
            "run cannot run VASP; `anisoscreen submit` sends them to a cluster).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Load and filter only; write nothing.")
    ] = False,
    max_hull: Annotated[float, typer.Option("--max-e-above-hull", help="eV/atom.")] = 0.050,
    min_gap: Annotated[float, typer.Option("--min-band-gap", help="eV.")] = 0.5,
    max_sites: Annotated[int, typer.Option("--max-sites", help="Keep fewer sites than this.")] = 40,
    processes: Annotated[
        int | None,
        typer.Option("--processes", help="Cores for the ranking descriptors (default: all)."),
    ] = None,
    include_known: Annotated[
        bool | None,
        typer.Option(
            "--include-known/--exclude-known",
            help="Keep materials that already have MP DFPT data (default: kept for the "
            "bundled demo, whose known dielectrics come with their MP DFPT results).",
        ),
    ] = None,
    describe_top: Annotated[
        int, typer.Option("--describe-top", help="robocrys descriptions for the top N (~2 s each).")
    ] = 0,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="Rank by ar (a_r of eps_inf), ar-total (a_r of eps_inf + eps0), eps-total "
            "(eps_poly of the static tensor), fom (E_g x eps_poly(total)), birefringence "
            "(dn = n_max - n_min of eps_inf) or eps-poly (of eps_inf); all but ar, birefringence "
            "and eps-poly use an ionic model "
            "(--ionic-model, else the shipped anisonet-mp-ionic-v1).",
        ),
    ] = "ar",
    ionic_model: Annotated[
        str | None,
        typer.Option("--ionic-model", help="Ionic model of the model set (name or path)."),
    ] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            "--shard-size",
            min=1,
            help="Candidates per prediction job (default: one job); each shard is its own job.",
        ),
    ] = None,
    refine_top: Annotated[
        int | None,
        typer.Option(
            "--refine-top",
            min=1,
            help="Recompute eps0, eps_total and the FOM of the top K by physics (Born charges x "
            "SevenNet Gamma force constants) and list their Gamma modes (seconds to a minute "
            "each on a CPU: the top 200 took 25 minutes on 2 idle cores with --refine-charges "
            "predicted; docs/ionic-physics.md).",
        ),
    ] = None,
    refine_charges: Annotated[
        str | None,
        typer.Option(
            "--refine-charges",
            help="Born charges of --refine-top: nominal (default: the direct eps0 is kept; the "
            "Gamma modes are added), dfpt (the data set's, where it holds the material) or "
            "predicted (anisonet-mp-born's with SevenNet-l3i5 force constants, blended with "
            "the direct eps0: the most accurate, its weights rebuilt from its recipe).",
        ),
    ] = None,
) -> None:
    """Screen a pool of structures: filter, predict eps_inf (and eps0), rank, store everything."""
    _check_source_path(source)  # before the heavy imports: a typo fails at once
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from anisoscreen.candidates.filters import ScreeningCriteria
    from anisoscreen.screening import jobs
    from anisoscreen.screening.flow_runner import run_flow_locally
    from anisoscreen.screening.flows import ScreeningMaker, screening_outputs
    from anisoscreen.store import ResultsStore, build_job_store

    settings = settings_from_options(
        store, data_dir, model=model, device=device, batch_size=batch_size, ionic_model=ionic_model
    )
    bundled = source == "bundled"
    if include_known is None:
        include_known = bundled
    criteria = ScreeningCriteria(
        max_energy_above_hull=max_hull,
        min_band_gap=min_gap,
        max_sites=max_sites,
        exclude_known_dielectrics=not include_known,
    )
    if dry_run:
        _dry_run(source, criteria, settings, console)
        return
    with ResultsStore(settings) as results:
        results.check()  # an unreachable or corrupt store fails now, in one line

    maker = ScreeningMaker.from_settings(
        settings,
        source=source,
        criteria=criteria,
        processes=processes,
        describe_top=describe_top,
        ar_threshold=ar_threshold,
        top_k=top_k,
        objective=objective,
        shard_size=shard_size,
        refine_top=refine_top,
        refine_charges=refine_charges,
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
        tasks: dict[str, TaskID] = {}

        def report(stage: str, advance: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], advance=advance, total=total)

        jobs.set_progress_reporter(report)
        try:
            responses = run_flow_locally(flow, build_job_store(settings))
        finally:
            jobs.set_progress_reporter(None)
    outputs = screening_outputs(flow, responses)
    if outputs is None:
        raise AnisoscreenError("the screening flow failed; see the messages above")
    if bundled and include_known:
        _import_bundled_dfpt(settings)
    _summary(console, outputs.run, outputs.ranking, time.perf_counter() - start, settings)
    if outputs.refinement is not None:
        _refinement_table(console, outputs.refinement)
    if validate:
        _explain_validation(settings, outputs.ranking, ar_threshold, top_k)
    if outputs.run.failures:
        _list_failures(outputs.run)


def _check_source_path(source: str) -> None:
    """A ``--source`` that names a local path must exist (checked before anything loads)."""
    from anisoscreen.candidates.optimade import is_optimade_source
    from anisoscreen.errors import SourceError

    if source in ("bundled", "mp") or is_optimade_source(source):
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(
            f"candidate source {source} does not exist; give --source bundled, mp, or an "
            "existing JSON(.gz) file, structure file or folder"
        )


def _import_bundled_dfpt(settings: AnisoscreenSettings) -> None:
    """Store the shipped MP DFPT results of the demo pool's known dielectrics."""
    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.store import ResultsStore
    from anisoscreen.validation.imports import bundled_validations

    with ResultsStore(settings) as results:
        predicted = results.keys(PredictionDoc, "material_id")
        docs = bundled_validations(set(predicted))
        results.upsert(docs)
    held_out = sum(not d.in_training_split for d in docs)
    console.print(
        f"imported {len(docs)} Materials Project DFPT result(s) of the pool's known dielectrics "
        f"as validations ({held_out} outside the model's training split)",
        highlight=False,
    )


def _explain_validation(
    settings: AnisoscreenSettings,
    ranking: RankingStageOutput,
    ar_threshold: float | None,
    top_k: int | None,
) -> None:
    """A local run cannot run VASP: say what the selection rule picks and how to submit it."""
    from anisoscreen.screening.jobs import select_for_validation
    from anisoscreen.settings import store_overrides
    from anisoscreen.validation.select import selection_rule

    # the screening flow's own selection job, run here without a validation maker
    response = select_for_validation.original(  # type: ignore[attr-defined]
        ranking, ar_threshold, top_k, store=store_overrides(settings)
    )
    selected = response.output.selected
    top_k, ar_threshold = selection_rule(top_k, ar_threshold)
    rules = ([f"a_r >= {ar_threshold:g}"] if ar_threshold is not None else []) + (
        [f"top {top_k}"] if top_k is not None else []
    )
    options = (f" --ar-min {ar_threshold:g}" if ar_threshold is not None else "") + (
        f" --top-k {top_k}" if top_k is not None else ""
    )
    shown = ", ".join(selected[:10]) + (", ..." if len(selected) > 10 else "")
    console.print(
        f"--validate: {len(selected)} candidates selected for DFT validation "
        f"({', '.join(rules)})"
        + (f": {shown}" if selected else "")
        + ". Nothing was submitted: a local run cannot run VASP. Configure a cluster with "
        f"`anisoscreen hpc-config`, then submit them with `anisoscreen submit{options}`",
        highlight=False,
    )


def _list_failures(run_doc: ScreeningRunDoc) -> None:
    """Print the run's failed records and end with the failed-records exit code."""
    from anisoscreen.errors import FailedRecordsError

    console.print(f"[bold]{len(run_doc.failures)} failed records[/bold]:")
    from anisoscreen.safe_text import safe_text

    for failure in run_doc.failures[:20]:  # ids and reasons may come from a hostile source
        ident, error = safe_text(failure["material_id"], 200), safe_text(failure["error"], 1000)
        console.print(f"  {ident}: {error}", highlight=False, markup=False)
    if len(run_doc.failures) > 20:
        console.print(f"  ... and {len(run_doc.failures) - 20} more")
    raise FailedRecordsError(
        f"{len(run_doc.failures)} of {run_doc.n_input} records failed (listed above; "
        f"`anisoscreen query --failed` lists them again); everything else is stored"
    )


def _dry_run(
    source: str, criteria: ScreeningCriteria, settings: AnisoscreenSettings, console: Console
) -> None:
    from anisoscreen.screening.jobs import filter_source

    _, batch, result = filter_source(source, criteria, settings.model, settings.data_dir)
    console.print(
        f"[bold]dry run[/bold]: {len(batch.candidates) + len(batch.failures)} structures "
        f"from {source}"
    )
    if batch.failures:
        console.print(f"  unreadable: {len(batch.failures)}")
    for name, count in result.removed_by.items():
        # the description is the condition a candidate must meet, so say what failed it
        kept_if = result.descriptions[name]
        failed = kept_if[4:] if kept_if.startswith("not ") else f"not {kept_if}"
        console.print(f"  removed, {failed}: {count}")
    console.print(
        f"  would predict {len(result.kept)} candidates with {settings.model}; nothing written"
    )


def _summary(
    console: Console,
    run_doc: ScreeningRunDoc,
    ranking: RankingStageOutput,
    seconds: float,
    settings: AnisoscreenSettings,
) -> None:
    from rich.table import Table

    from anisoscreen.screening.objectives import needs_ionic

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
    titles = {
        "ar": "anisotropy ratio",
        "ar-total": "a_r of the static tensor",
        "eps-total": "static eps_poly",
        "fom": "FOM = E_g x eps_poly(total)",
        "birefringence": "birefringence dn",
        "eps-poly": "eps_poly of eps_inf",
    }
    top = Table(
        title=f"top 10 by {titles.get(ranking.objective, ranking.objective)} "
        f"({run_doc.model} {run_doc.model_version})"
    )
    with_total = needs_ionic(ranking.objective)
    columns = ["material_id", "formula", "a_r", "eps_poly", "dn", "space group", "dim"]
    if with_total:
        columns += ["a_r total", "eps_poly total", "FOM"]
    for column in columns:
        top.add_column(column)

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for row in ranking.ranking[:10]:
        dim = row.dimensionality
        cells = [
            row.material_id,
            row.formula,
            f"{row.anisotropy_ratio:.2f}",
            f"{row.eps_poly:.2f}",
            "-" if row.birefringence is None else f"{row.birefringence:.3f}",
            row.space_group_symbol or "-",
            "?" if dim is None else f"{int(dim)}D",
        ]
        if with_total:
            cells += [
                number(row.eps_total_anisotropy_ratio),
                number(row.eps_total_poly),
                number(row.figure_of_merit),
            ]
        top.add_row(*cells)
    console.print(top)
    console.print(f"results in {settings.store_location}; query them with `anisoscreen query`")


def _print_failed(settings, output_format: str) -> None:
    """The failures recorded by the latest screening run (``query --failed``)."""
    import json
    import sys

    from anisoscreen.schemas import ScreeningRunDoc
    from anisoscreen.store import ResultsStore

    with ResultsStore(settings) as results:
        latest = results.query(ScreeningRunDoc, sort={"finished_at": -1}, limit=1)
    if not latest:
        raise AnisoscreenError(f"no screening run in {settings.store_location}; run run-screen")
    run = latest[0]
    if output_format == "json":
        sys.stdout.write(json.dumps(run.failures, indent=2) + "\n")
        return
    if output_format == "csv":
        sys.stdout.write("material_id,error\n")
        for failure in run.failures:
            error = failure["error"].replace('"', '""')
            sys.stdout.write(f'{failure["material_id"]},"{error}"\n')
        return
    when = f"{run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else "unfinished"
    console.print(
        f"run {run.run_id[:8]} ({run.source}, {when}): {len(run.failures)} failed records",
        highlight=False,
    )
    for failure in run.failures:
        console.print(f"  {failure['material_id']}: {failure['error']}", highlight=False)


def query(
    validated: Annotated[
        bool, typer.Option("--validated", help="Only DFT-validated candidates.")
    ] = False,
    limit: LimitOption = 20,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="table, json or csv.")
    ] = "table",
    failed: Annotated[
        bool,
        typer.Option("--failed", help="List the failed records of the latest screening run."),
    ] = False,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    *,
    filters: QueryOptions,
) -> None:
    """Query stored candidates: filter by a_r, dimensionality and elements, sort, print."""
    import csv
    import json
    import sys

    from anisoscreen.query import find_candidates
    from anisoscreen.store import ResultsStore

    if output_format not in ("table", "json", "csv"):
        raise AnisoscreenError("--format must be table, json or csv")
    request = filters.to_query(validated_only=validated, limit=limit)
    settings = settings_from_options(store, data_dir)
    if failed:
        _print_failed(settings, output_format)
        return
    with ResultsStore(settings) as results:
        rows = find_candidates(results, request)
    if not rows:  # as table, plot and report: no match is exit status 1, said on stderr
        raise AnisoscreenError(
            f"no candidates match ({request.describe()}) in {settings.store_location}"
        )
    records = [row.summary() for row in rows]
    if output_format == "json":
        details = [row.details() for row in rows]
        sys.stdout.write(json.dumps(details, indent=2) + "\n")
        return
    if output_format == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(records[0]) if records else ["material_id"]
        )
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "elements": " ".join(record["elements"])})
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} candidates ({request.describe()}), sorted by {request.sort}")
    # the static-tensor columns appear when any row was predicted with an ionic model; their
    # values are those of the row's eps0 method (refined where the refine stage ran)
    with_static = any(record["predicted_eps_total"] is not None for record in records)
    static_columns = (
        ["eps0 method", "eps_ionic", "eps_total", "a_r total", "FOM"] if with_static else []
    )
    for column in (
        "material_id",
        "formula",
        "a_r",
        "eps_poly",
        "dn",
        "optics",
        "space group",
        "dim",
        "E_hull (eV/at)",
        "gap (eV)",
        *static_columns,
        "source",
    ):
        table.add_column(column, no_wrap=column in ("material_id", "formula"))

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    for row, record in zip(rows, records, strict=False):
        dim = record["dimensionality"]
        static = (
            [
                record["ionic_method"] or "",
                number(record["predicted_eps_ionic"]),
                number(record["predicted_eps_total"]),
                number(record["predicted_ar_total"]),
                number(record["figure_of_merit"]),
            ]
            if with_static
            else []
        )
        table.add_row(
            record["material_id"],
            record["formula"],
            f"{record['anisotropy_ratio']:.2f}",
            f"{record['eps_poly']:.2f}",
            "" if record["birefringence"] is None else f"{record['birefringence']:.3f}",
            record["optical_character"] or "",
            record["space_group_symbol"] or "",
            "?" if dim is None else f"{dim}D",
            "" if record["energy_above_hull"] is None else f"{record['energy_above_hull']:.3f}",
            "" if record["band_gap"] is None else f"{record['band_gap']:.2f}",
            *static,
            "DFPT" if row.validated else "predicted",
        )
    console.print(table)

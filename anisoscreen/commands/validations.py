"""``anisoscreen validations import``: existing DFT results into the store, with provenance.

Only argument parsing and printing; the work is in :mod:`anisoscreen.validation.imports`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anisoscreen.commands.common import DataDirOption, StoreOption, console, settings_from_options
from anisoscreen.errors import SourceError

__all__ = ["register"]

validations_app = typer.Typer(
    help="Existing DFT results as validations (VASP folders, MP dielectric data).",
    no_args_is_help=True,
)


def import_(
    source: Annotated[
        Path,
        typer.Argument(
            help="A folder of VASP DFPT outputs, a JSON(.gz) export of MP dielectric "
            "documents, or the shared MP DFPT set (mp_dielectric_tensors.json.gz)."
        ),
    ],
    kind: Annotated[
        str, typer.Option("--kind", help="auto (by content), vasp, mp-docs or mp-set.")
    ] = "auto",
    ids: Annotated[
        str | None,
        typer.Option("--ids", help="Comma-separated material ids to import (default: all)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Mark materials in this model's training split (default: the settings' model).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and count only; write nothing.")
    ] = False,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Import existing DFPT results as validations (never as runs made here)."""
    if not source.exists():  # before the heavy imports: a typo fails at once
        raise SourceError(f"validation source {source} not found")
    from anisoscreen.commands.progress import progress
    from anisoscreen.store import ResultsStore
    from anisoscreen.validation.imports import import_validations, mark_training

    settings = settings_from_options(store, data_dir, **({"model": model} if model else {}))
    wanted = [i.strip() for i in ids.split(",") if i.strip()] if ids else None
    with progress("importing", console) as report:
        docs = import_validations(source, kind=kind, ids=wanted, progress=report)
    training = _training_ids(settings)
    docs = mark_training(docs, training)
    n_training = sum(bool(d.in_training_split) for d in docs)
    n_flagged = sum(not d.is_valid for d in docs)
    if not dry_run:
        with ResultsStore(settings) as results:
            results.upsert(docs)
    where = "(dry run, nothing written)" if dry_run else "into the store"
    console.print(
        f"imported {len(docs)} validation(s) {where}: {n_flagged} flagged, "
        f"{n_training} in the training split of {', '.join(training) or 'no known model'} "
        "(left out of accuracy figures by default)",
        highlight=False,
    )


def _training_ids(settings) -> dict[str, set[str]]:
    """``{model name: training-split ids}`` of the settings' model, when it can be known."""
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.model.checkpoint import resolve_model_path
    from anisoscreen.validation.imports import training_split_ids

    try:
        path = Path(resolve_model_path(settings.model, settings.data_dir))
    except AnisoscreenError:
        return {}
    folder = path if path.is_dir() else path.parent
    ids = training_split_ids(folder, settings.shared)
    return {str(settings.model): ids} if ids else {}


def register(app: typer.Typer) -> None:
    """Add the ``validations`` command group to ``app``."""
    validations_app.command("import")(import_)
    app.add_typer(validations_app, name="validations")

"""``anisoscreen table`` and ``anisoscreen plot KIND``: reports on the results store.

Both take the candidate filters of ``anisoscreen query``
(:func:`~anisoscreen.commands.query_options.query_options`, built once in
:mod:`anisoscreen.query`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from anisoscreen.commands.common import (
    DataDirOption,
    LimitOption,
    StoreOption,
    settings_from_options,
)
from anisoscreen.commands.query_options import QueryOptions, query_options
from anisoscreen.errors import AnisoscreenError

__all__ = ["FigureKind", "register"]


class FigureKind(str, Enum):
    """Figure kinds of ``anisoscreen plot``."""

    dimensionality = "dimensionality"
    histogram = "histogram"
    parity = "parity"
    spectra = "spectra"
    periodic_eps = "periodic-eps"
    periodic_ar = "periodic-ar"
    periodic_count = "periodic-count"
    high_kappa = "high-kappa"


# -- table / plot options -----------------------------------------------------------------------
TableOutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write to this file (format from the suffix)."),
]
TableFormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="csv, markdown, latex or html (default: from --output, else markdown).",
    ),
]
ColumnsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--columns",
        "-c",
        help="Optional columns: predicted, dimensionality, e_hull, band_gap, eps_poly, all "
        "(repeat or comma-separate).",
    ),
]
IncludePredictionsOption = Annotated[
    bool,
    typer.Option(
        "--include-predictions",
        help="Also list candidates without a completed DFPT validation (marked 'predicted').",
    ),
]
KindArgument = Annotated[
    FigureKind,
    typer.Argument(
        help="dimensionality, histogram, parity, spectra, periodic-eps, periodic-ar, "
        "periodic-count or high-kappa.",
        show_default=False,
    ),
]
FigureOutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Output file, .png/.svg/.pdf (default: KIND.png)."),
]
FigureFormatOption = Annotated[
    str | None, typer.Option("--format", "-f", help="png, svg or pdf (default: from --output).")
]
DpiOption = Annotated[int, typer.Option("--dpi", min=10, help="Resolution of PNG output.")]
ValidatedOnlyOption = Annotated[
    bool,
    typer.Option(
        "--validated",
        help="Only DFT-validated candidates (dimensionality then shows the DFPT a_r), as in "
        "query --validated.",
    ),
]
IncludeTrainingOption = Annotated[
    bool,
    typer.Option(
        "--include-training",
        help="'parity': also draw materials that were in the model's training split "
        "(left out by default: they flatter the model).",
    ),
]
TrainingOption = Annotated[
    Path | None,
    typer.Option(
        "--training",
        help="Training data for 'histogram' "
        "(default: $ANISOSCREEN_SHARED/data/mp_dielectric_tensors.json.gz).",
    ),
]
VmaxOption = Annotated[
    float | None, typer.Option("--vmax", help="Cap of the colour scale (periodic-*).")
]
QuantityOption = Annotated[
    str, typer.Option("--quantity", help="'spectra': absorption, eps_imag or auto.")
]
MaxMaterialsOption = Annotated[
    int, typer.Option("--max-materials", min=1, help="'spectra': at most this many panels.")
]


_NEEDS_VALIDATION = {"histogram", "parity", "spectra"}


def _empty_message(results, query, validated: bool, can_include_predictions: bool) -> str:
    where = results.location
    n_predictions = results.count("predictions")
    if n_predictions == 0:
        return f"no predictions in the store {where}; run the screening (run-screen) first"
    what = "validated candidates" if validated else "candidates"
    hint = ""
    if validated:
        hint = "; run the DFT validation first (anisoscreen submit, then anisoscreen collect)"
        if can_include_predictions:
            hint += ", or add --include-predictions"
    return f"no {what} in the store {where} match the query ({query.describe()}){hint}"


def table(
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    output: TableOutputOption = None,
    fmt: TableFormatOption = None,
    columns: ColumnsOption = None,
    include_predictions: IncludePredictionsOption = False,
    limit: LimitOption = None,
    *,
    filters: QueryOptions,
) -> None:
    """Table of candidates (Table S1): DFPT tensor and a_r, sorted by a_r."""
    from anisoscreen.query import find_candidates
    from anisoscreen.report.tables import format_from_path, parse_columns, render_table
    from anisoscreen.store import ResultsStore

    extra = parse_columns(columns)
    fmt = fmt or (format_from_path(output) if output else "markdown")
    query = filters.to_query(limit=limit, validated_only=not include_predictions)
    settings = settings_from_options(store, data_dir)
    with ResultsStore(settings) as results:
        rows = find_candidates(results, query)
        if not rows:
            raise AnisoscreenError(
                _empty_message(
                    results, query, validated=not include_predictions, can_include_predictions=True
                )
            )
    text = render_table(rows, fmt, extra)
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {len(rows)} rows ({fmt}) to {output}", err=True)


def plot(
    kind: KindArgument,
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    output: FigureOutputOption = None,
    fmt: FigureFormatOption = None,
    dpi: DpiOption = 150,
    validated_only: ValidatedOnlyOption = False,
    training: TrainingOption = None,
    include_training: IncludeTrainingOption = False,
    vmax: VmaxOption = None,
    quantity: QuantityOption = "auto",
    max_materials: MaxMaterialsOption = 6,
    limit: LimitOption = None,
    *,
    filters: QueryOptions,
) -> None:
    """Draw a figure of the store (Figs. 6, 7, S3-S5 of the reference paper, parity plots)."""
    from anisoscreen.query import find_candidates
    from anisoscreen.report.figures import (
        figure_format,
        make_figure,
        save_figure,
        training_anisotropy_ratios,
    )
    from anisoscreen.store import ResultsStore

    name = kind.value
    output = output or Path(f"{name}.{fmt or 'png'}")
    fmt = figure_format(output, fmt)
    validated = validated_only or name in _NEEDS_VALIDATION
    query = filters.to_query(limit=limit, validated_only=validated)
    settings = settings_from_options(store, data_dir)
    with ResultsStore(settings) as results:
        rows = find_candidates(results, query)
        if not rows:
            raise AnisoscreenError(
                _empty_message(results, query, validated=validated, can_include_predictions=False)
            )
    training_ratios: Sequence[float] | None = None
    if name == "histogram":
        try:
            training_ratios = training_anisotropy_ratios(training, shared=settings.shared).tolist()
        except AnisoscreenError as exc:
            if training is not None:  # a file the user named must exist
                raise
            typer.echo(f"note: {exc}; drawing the validated candidates alone", err=True)
            training_ratios = []
    figure = make_figure(
        name,
        rows,
        training_ratios=training_ratios,
        source="dft" if validated_only else "predicted",
        vmax=vmax,
        quantity=quantity,
        max_materials=max_materials,
        include_training=include_training,
    )
    save_figure(figure, output, fmt, dpi=dpi)
    typer.echo(f"wrote {name} figure ({len(rows)} candidates) to {output}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``table`` and ``plot`` commands to ``app``."""
    app.command("table")(query_options(table))
    app.command("plot")(query_options(plot))

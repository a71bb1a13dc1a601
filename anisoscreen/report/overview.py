"""The overview of a store: Fig. 6a/6b-style plots, periodic-table heat maps, counts per filter.

Shared by the web overview page and ``anisoscreen report --html``. Figures come from
:mod:`anisoscreen.report.figures` and are rendered to inline SVG text or base64 PNG;
a figure that cannot be drawn (no validated candidates for the histogram, no training data)
is listed with the reason instead.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from anisoscreen.errors import AnisoscreenError
from anisoscreen.query import CandidateRow
from anisoscreen.schemas import ScreeningRunDoc

__all__ = [
    "OVERVIEW_FIGURES",
    "OverviewFigure",
    "RunCounts",
    "overview_figure",
    "render_figure",
    "run_counts",
]

OVERVIEW_FIGURES: dict[str, str] = {
    "dimensionality": "Predicted a_r by structural dimensionality (Fig. 6a)",
    "histogram": "a_r of validated candidates against the training set (Fig. 6b)",
    "parity": "Predicted against DFPT eps_poly and a_r",
    "periodic-eps": "Mean predicted eps_poly per element",
    "periodic-ar": "Mean predicted a_r per element",
    "periodic-count": "Candidates containing each element",
}
"""Figure kinds of the overview and their titles, in display order."""

OVERVIEW_DPI = 90


class OverviewFigure(BaseModel):
    """One overview figure: SVG text or a base64 PNG, or why it is missing."""

    kind: str
    title: str
    fmt: str
    content: str | None = None
    url: str | None = Field(default=None, description="Where a page loads the figure from instead.")
    missing: str | None = None


class RunCounts(BaseModel):
    """How many candidates each filter of one screening run removed."""

    run_id: str
    source: str
    model: str | None
    started_at: str
    n_input: int
    removed_by: dict[str, int]
    n_candidates: int
    n_predicted: int
    n_reused: int
    n_failed: int


def render_figure(fig: Any, fmt: str = "svg", dpi: int = OVERVIEW_DPI) -> str:
    """A matplotlib figure as SVG markup (for inline use) or as base64-encoded PNG."""
    import matplotlib

    buffer = io.BytesIO()
    if fmt == "svg":
        # text as <text> elements, not glyph paths: several times smaller and faster
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(buffer, format="svg", metadata={"Date": None})
        text = buffer.getvalue().decode("utf-8")
        return text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE
    if fmt == "png":
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
        return base64.b64encode(buffer.getvalue()).decode("ascii")
    raise ValueError(f"fmt must be 'svg' or 'png', got {fmt!r}")


def overview_figure(
    kind: str,
    rows: Sequence[CandidateRow],
    *,
    fmt: str = "svg",
    training_ratios: Sequence[float] | None = None,
) -> OverviewFigure:
    """Draw one overview figure of ``rows`` (``training_ratios``: for the histogram)."""
    from anisoscreen.report.figures import make_figure

    title = OVERVIEW_FIGURES[kind]
    if kind == "histogram" and training_ratios is None:
        missing = (
            "no training data found"
            if any(row.validated for row in rows)
            else "no DFPT-validated candidates yet"
        )
        return OverviewFigure(kind=kind, title=title, fmt=fmt, missing=missing)
    try:
        fig = make_figure(kind, rows, training_ratios=training_ratios)
    except AnisoscreenError as exc:
        return OverviewFigure(kind=kind, title=title, fmt=fmt, missing=str(exc))
    return OverviewFigure(kind=kind, title=title, fmt=fmt, content=render_figure(fig, fmt))


def run_counts(runs: Sequence[ScreeningRunDoc]) -> list[RunCounts]:
    """Counts per filter of each run, newest first."""
    ordered = sorted(runs, key=lambda run: run.started_at, reverse=True)
    return [
        RunCounts(
            run_id=run.run_id,
            source=run.source,
            model=run.model,
            started_at=run.started_at.strftime("%Y-%m-%d %H:%M UTC"),
            n_input=run.n_input,
            removed_by=dict(run.removed_by),
            n_candidates=run.n_candidates,
            n_predicted=run.n_predicted,
            n_reused=run.n_reused,
            n_failed=run.n_failed,
        )
        for run in ordered
    ]

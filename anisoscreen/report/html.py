"""``anisoscreen report --html``: one self-contained HTML file of a store.

The file holds the overview (figures as inline base64 PNG, counts per filter of each run),
the top-N candidates table and a card per material (tensor, eigenvalues, principal axes,
spread, DFPT tensor, dimensionality, description). Styles and the small table-sorting script
are inline; nothing is fetched, so the file opens anywhere, offline.

The Jinja2 environment built here (:func:`template_environment`) is shared with the web
pages, which reuse the table, card and overview templates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup

from anisoscreen import __version__
from anisoscreen.query import CandidateRow
from anisoscreen.report.cards import CandidateRecord, material_card
from anisoscreen.report.overview import OVERVIEW_FIGURES, overview_figure, run_counts
from anisoscreen.report.tables import html_formula
from anisoscreen.schemas import ScreeningRunDoc

__all__ = ["TEMPLATES", "render_html_report", "template_environment", "write_html_report"]

TEMPLATES = Path(__file__).with_name("templates")
"""Templates shared by the report and the web pages."""


def _number(value: Any, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.lstrip("-0.") == "" and text.startswith("-") else text  # no "-0.000"


def _dimensionality(value: int | None) -> str:
    return "—" if value is None else f"{int(value)}D"


def _formula(value: str) -> Markup:
    return Markup(html_formula(value))


def _id_path(material_id: str) -> str:
    """A material id as one URL path segment (or fragment): every reserved byte escaped."""
    from urllib.parse import quote

    return quote(str(material_id), safe="")


def template_environment(*extra: Path):
    """A Jinja2 environment over ``extra`` folders and :data:`TEMPLATES`, autoescaping on."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader([str(path) for path in (*extra, TEMPLATES)]),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _number
    env.filters["dim"] = _dimensionality
    env.filters["formula"] = _formula
    env.filters["id_path"] = _id_path
    env.globals["version"] = __version__
    return env


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/~.])(?:~|[A-Za-z]:)?[/\\][^\s()]+")


def redact_location(location: str) -> str:
    """A store location fit for a file sent to others: no home or other folder names.

    Every absolute path is shortened to its last two parts (``/home/ana/.local/share/
    anisoscreen/store (embedded montydb)`` -> ``…/anisoscreen/store (embedded montydb)``);
    ``mongodb://`` locations are already without credentials (``settings.redact_store``).
    """

    def short(match: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[/\\]", match.group(0)) if p]
        return "…/" + "/".join(parts[-2:]) if len(parts) > 2 else match.group(0)

    return _ABSOLUTE_PATH.sub(short, location)


def render_html_report(
    rows: Sequence[CandidateRow],
    runs: Sequence[ScreeningRunDoc] = (),
    *,
    top: int = 50,
    training_ratios: Sequence[float] | None = None,
    title: str = "anisoscreen report",
    store: str = "",
    query: str = "",
    progress: Callable[[int, int | None], None] | None = None,
) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    rows
        Every candidate of the query, sorted (the overview uses all of them).
    runs
        Screening runs, for the counts per filter.
    top
        Rows of the table and material cards (0: all).
    training_ratios
        Training-set a_r for the histogram (left out when ``None``).
    progress
        Called as ``progress(done, total)`` after each figure and material card.
    """
    shown = list(rows[:top] if top else rows)
    total = len(OVERVIEW_FIGURES) + len(shown)
    figures = []
    for kind in OVERVIEW_FIGURES:
        figures.append(overview_figure(kind, rows, fmt="png", training_ratios=training_ratios))
        if progress is not None:
            progress(len(figures), total)
    cards = []
    for row in shown:
        cards.append(material_card(row))
        if progress is not None:
            progress(len(figures) + len(cards), total)
    env = template_environment()
    return env.get_template("report.html").render(
        title=title,
        store=redact_location(store),
        query=query,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_total=len(rows),
        records=[CandidateRecord.of(row) for row in shown],
        cards=cards,
        figures=figures,
        runs=run_counts(runs),
        material_href="#card-",
    )


def write_html_report(path: str | Path, rows: Sequence[CandidateRow], **options: Any) -> Path:
    """Write :func:`render_html_report` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html_report(rows, **options), encoding="utf-8")
    return path

"""Server-rendered pages: candidates table, material page, overview, figures.

Filters come from the URL and are validated by the same model as the API
(:class:`~anisoscreen.web.models.CandidateParams`); an invalid filter renders the page with
the error (status 422) instead of a table. Empty form fields are ignored.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from anisoscreen.errors import AnisoscreenError
from anisoscreen.query import SORT_FIELDS, CandidateQuery
from anisoscreen.report.cards import CandidateRecord
from anisoscreen.report.overview import (
    OVERVIEW_FIGURES,
    OverviewFigure,
    overview_figure,
    run_counts,
)
from anisoscreen.web.api import (
    MAX_ID_LENGTH,
    MaterialId,
    StructureFormat,
    material_response,
    structure_text,
)
from anisoscreen.web.models import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, CandidateParams
from anisoscreen.web.snapshot import ResultsView

__all__ = ["FigureKind", "router"]

router = APIRouter(include_in_schema=False)

_LIST_FIELDS = ("dimensionality", "elements", "exclude_elements")


class FigureKind(str, Enum):
    """Figures of the overview page."""

    dimensionality = "dimensionality"
    histogram = "histogram"
    parity = "parity"
    periodic_eps = "periodic-eps"
    periodic_ar = "periodic-ar"
    periodic_count = "periodic-count"


def _view(request: Request) -> ResultsView:
    return request.app.state.view


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = request.app.state.templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code)


def _form_values(request: Request) -> dict[str, Any]:
    """Non-empty query parameters; list filters joined with commas."""
    values: dict[str, Any] = {}
    for key in request.query_params:
        items = [v.strip() for v in request.query_params.getlist(key) if v.strip()]
        if not items:
            continue
        values[key] = ",".join(items) if key in _LIST_FIELDS else items[-1]
    return values


def _error_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'query'}: "
        f"{str(err['msg']).removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def _candidates_page(request: Request, heading: str | None = None) -> HTMLResponse:
    form = _form_values(request)
    error = None
    try:
        params = CandidateParams(**form)
    except ValidationError as exc:
        error = f"Invalid filter: {_error_text(exc)}"
        params = CandidateParams()
    query = params.query()
    snapshot = _view(request).snapshot()
    rows = snapshot.candidate_rows(query) if error is None else []
    page_rows = rows[params.skip : params.skip + params.limit]

    def url(path: str = "/candidates", **changes: Any) -> str:
        merged = {**form, **changes}
        merged = {k: v for k, v in merged.items() if v not in (None, "", 0) or k == "skip"}
        if merged.get("skip") == 0:
            del merged["skip"]
        return f"{path}?{urlencode(merged)}" if merged else path

    sort_urls = {}
    for key in SORT_FIELDS:
        natural = CandidateQuery.model_validate({"sort": key}).is_descending
        descending = not query.is_descending if key == query.sort else natural
        sort_urls[key] = url(sort=key, descending=str(descending).lower(), skip=0)
    pages = max(1, math.ceil(len(rows) / params.limit))
    page = params.skip // params.limit + 1
    return _render(
        request,
        "candidates.html",
        status_code=422 if error else 200,
        heading=heading,
        summary=snapshot.summary_values() if heading else None,
        form=form,
        error=error,
        records=[CandidateRecord.of(row) for row in page_rows],
        total=len(rows),
        offset=params.skip,
        limit=params.limit,
        max_page=MAX_PAGE_SIZE,
        sort=query.sort,
        descending=query.is_descending,
        sort_fields=SORT_FIELDS,
        sort_urls=sort_urls,
        query_text=query.describe(),
        material_href="/materials/",
        max_id_length=MAX_ID_LENGTH,
        page=page,
        pages=pages,
        prev_url=url(skip=max(0, params.skip - params.limit)) if params.skip > 0 else None,
        next_url=url(skip=params.skip + params.limit)
        if params.skip + params.limit < len(rows)
        else None,
        api_url=url("/api/candidates", limit=params.limit or DEFAULT_PAGE_SIZE),
    )


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """Home: store statistics and the top of the candidates table."""
    return _candidates_page(request, heading="Ranked candidates")


@router.get("/candidates", response_class=HTMLResponse)
def candidates(request: Request) -> HTMLResponse:
    """The candidates table: filters, server-side sort and pagination."""
    return _candidates_page(request)


@router.get("/materials/{material_id:path}", response_class=HTMLResponse)
def material(request: Request, material_id: MaterialId) -> HTMLResponse:
    """One material: structure viewer and download, tensors, spread, validations, optics."""
    from fastapi import HTTPException

    view = _view(request)
    response = material_response(view, material_id)
    try:
        cif = structure_text(view, material_id, StructureFormat.cif)
    except HTTPException:
        cif = None
    spectra = None
    rows = [
        row
        for row in view.snapshot().candidate_rows(CandidateQuery())
        if row.material_id == material_id
    ]
    if rows and rows[0].optics_validation is not None:
        from anisoscreen.report.figures import plot_spectra
        from anisoscreen.report.overview import render_figure

        try:
            spectra = render_figure(plot_spectra(rows, max_materials=1), "svg")
        except AnisoscreenError:
            spectra = None
    formula = (
        response.card.formula
        if response.card
        else (response.candidate or {}).get("formula_pretty")
        or next((v["formula_pretty"] for v in response.validations), material_id)
    )
    return _render(
        request, "material.html", material=response, formula=formula, cif=cif, spectra=spectra
    )


@router.get("/overview", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    """Fig. 6a/6b-style plots, periodic-table heat maps and counts per filter of each run."""
    snapshot = _view(request).snapshot()
    figures = [
        OverviewFigure(kind=kind, title=title, fmt="svg", url=f"/figures/{kind}.svg")
        for kind, title in OVERVIEW_FIGURES.items()
    ]
    return _render(
        request,
        "overview.html",
        figures=figures,
        runs=run_counts(snapshot.runs),
        summary=snapshot.summary_values(),
    )


def _best(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{max(seen):.3f}" if seen else "–"


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns(request: Request) -> HTMLResponse:
    """Closed-loop campaigns of the store, newest first."""
    docs = sorted(_view(request).snapshot().campaigns, key=lambda d: d.created_at, reverse=True)
    best = {d.name: _best([p.observed for r in d.rounds for p in r.picks]) for d in docs}
    return _render(request, "campaigns.html", campaigns=docs, best=best)


@router.get("/campaigns/{name}", response_class=HTMLResponse)
def campaign(request: Request, name: Annotated[str, Path(max_length=64)]) -> HTMLResponse:
    """One campaign: picks per round, best DFT result against DFT calculations, models."""
    doc = next((d for d in _view(request).snapshot().campaigns if d.name == name), None)
    if doc is None:
        return _render(request, "campaigns.html", status_code=404, campaigns=[], best={})
    rounds, observed, calculations = [], [], 0
    for r in doc.rounds:
        calculations += sum(p.observed is not None for p in r.picks)
        observed += [p.observed for p in r.picks]
        rounds.append(
            {
                "index": r.index,
                "model": r.model,
                "calculations": calculations,
                "best": _best(observed),
                "stage": r.stage,
                "new_model": r.new_model,
            }
        )
    return _render(request, "campaign.html", campaign=doc, rounds=rounds)


@router.get("/figures/{kind}.svg")
def figure(request: Request, kind: Annotated[FigureKind, Path()]) -> Response:
    """One overview figure as SVG (drawn once per snapshot)."""
    snapshot = _view(request).snapshot()
    key = ("figure", kind.value)
    if key not in snapshot.cache:
        rows = snapshot.candidate_rows(CandidateQuery())
        training = None
        if kind is FigureKind.histogram and any(row.validated for row in rows):
            training = request.app.state.training_ratios()  # read once, only when needed
        drawn = overview_figure(kind.value, rows, fmt="svg", training_ratios=training)
        snapshot.cache[key] = drawn
    drawn = snapshot.cache[key]
    if drawn.content is None:
        text = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="460" height="60">'
            f'<text x="10" y="35" font-family="sans-serif" font-size="13" fill="#5b6475">'
            f"Not drawn: {_escape(drawn.missing or '')}</text></svg>"
        )
    else:
        text = drawn.content
        if "xmlns=" not in text[:200]:
            text = text.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
    return Response(text, media_type="image/svg+xml")


def _escape(text: str) -> str:
    import html

    return html.escape(text)

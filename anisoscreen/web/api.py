"""REST resources under ``/api``: index, candidates, materials, validations, runs, campaigns.

Read-only ``GET`` endpoints only. Query parameters are pydantic models
(:mod:`anisoscreen.web.models`), so a bad value is a 422 naming the parameter, and an
unknown parameter is a 422 too. List responses are ``{"data": [...], "meta": {...}}``.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse

from anisoscreen.query import CandidateQuery
from anisoscreen.schemas import CampaignDoc, ScreeningRunDoc
from anisoscreen.web.models import (
    CandidateParams,
    CandidateRecord,
    MaterialResponse,
    Meta,
    Page,
    PageParams,
    Summary,
    ValidationParams,
)
from anisoscreen.web.snapshot import ResultsView

__all__ = ["MAX_ID_LENGTH", "MaterialId", "StructureFormat", "router", "structure_text"]

router = APIRouter(prefix="/api", tags=["api"])

MAX_ID_LENGTH = 1000
"""Longest material id served (percent-encoded, it still fits uvicorn's request-line limit)."""

MaterialId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="MP id (mp-...), structure hash (as-...) or any stored id, percent-encoded "
        "(ids may hold '/', '#', '?', spaces and non-ASCII characters).",
    ),
]


class StructureFormat(str, Enum):
    """Structure download formats."""

    cif = "cif"
    poscar = "poscar"


def get_view(request: Request) -> ResultsView:
    """The app's :class:`ResultsView` (a FastAPI dependency)."""
    return request.app.state.view


View = Annotated[ResultsView, Depends(get_view)]


@router.get("/candidates", response_model=Page[CandidateRecord], summary="Ranked candidates")
def candidates(params: Annotated[CandidateParams, Query()], view: View) -> Page[CandidateRecord]:
    """Candidates with the filters and sort keys of ``anisoscreen query``, one page at a time.

    One row per material: its newest prediction (or that of ``model``) joined with its
    completed DFPT validation; ``anisotropy_ratio`` is the DFT value when validated.
    """
    query = params.query()
    rows = view.snapshot().candidate_rows(query)
    page = rows[params.skip : params.skip + params.limit]
    return Page[CandidateRecord](
        data=[CandidateRecord.of(row) for row in page],
        meta=Meta(total=len(rows), skip=params.skip, limit=params.limit, query=query.describe()),
    )


@router.get("/predictions", summary="Predictions of every model")
def predictions(params: Annotated[CandidateParams, Query()], view: View) -> Page[dict]:
    """Prediction documents matching the candidate filters (every model, unjoined).

    Sorted by predicted a_r (or ``sort=material_id``/``formula``); ``validated_only`` keeps
    materials with a completed DFPT tensor.
    """
    query = params.query()
    snapshot = view.snapshot()
    ids = None
    if query.validated_only:
        ids = {v.material_id for v in snapshot.completed if v.epsilon_electronic is not None}
    docs = snapshot.matching(query.criteria(ids))
    keys = {
        "material_id": lambda d: d.material_id,
        "formula": lambda d: d.formula_pretty,
        "eps_poly": lambda d: d.eps_poly,
        "predicted_eps_poly": lambda d: d.eps_poly,
    }
    key = keys.get(query.sort, lambda d: d.anisotropy_ratio)
    docs = sorted(docs, key=key, reverse=query.is_descending)
    page = docs[params.skip : params.skip + params.limit]
    return Page[dict](
        data=[doc.store_dict() for doc in page],
        meta=Meta(total=len(docs), skip=params.skip, limit=params.limit, query=query.describe()),
    )


def material_response(view: ResultsView, material_id: str) -> MaterialResponse:
    """Everything about one material; 404 when the store knows nothing of it."""
    snapshot = view.snapshot()
    predictions = [
        snapshot.predictions[i]
        for i, record in enumerate(snapshot.records)
        if record.get("material_id") == material_id
    ]
    validations = [doc for doc in snapshot.validations if doc.material_id == material_id]
    candidate = view.candidate(material_id)
    if not predictions and not validations and candidate is None:
        raise HTTPException(status_code=404, detail=f"no material {material_id!r} in the store")
    rows = [
        row for row in snapshot.candidate_rows(CandidateQuery()) if row.material_id == material_id
    ]
    return MaterialResponse.of(
        material_id,
        rows[0] if rows else None,
        candidate,
        sorted(predictions, key=lambda d: d.created_at, reverse=True),
        sorted(validations, key=lambda d: d.last_updated, reverse=True),
    )


def structure_text(view: ResultsView, material_id: str, fmt: StructureFormat) -> str:
    """The stored structure of a material as CIF or POSCAR text (404 when none)."""
    candidate = view.candidate(material_id)
    if candidate is None:
        raise HTTPException(status_code=404, detail=f"no structure for {material_id!r}")
    if fmt is StructureFormat.cif:
        from pymatgen.io.cif import CifWriter

        return str(CifWriter(candidate.structure))
    from pymatgen.io.vasp import Poscar

    return Poscar(
        candidate.structure, comment=f"{material_id} {candidate.formula_pretty}"
    ).get_str()


@router.get(
    "/materials/{material_id:path}/structure",
    response_class=PlainTextResponse,
    summary="Structure file",
)
def structure(
    material_id: MaterialId,
    view: View,
    fmt: Annotated[StructureFormat, Query(alias="format")] = StructureFormat.cif,
) -> PlainTextResponse:
    """Download the structure as CIF (default) or POSCAR."""
    text = structure_text(view, material_id, fmt)
    name = f"{material_id}.cif" if fmt is StructureFormat.cif else f"{material_id}.POSCAR"
    return PlainTextResponse(text, headers={"Content-Disposition": attachment(name)})


def attachment(name: str) -> str:
    """A ``Content-Disposition`` for any file name: an ASCII fallback and the exact name."""
    import re
    from urllib.parse import quote

    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-200:] or "structure"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get(
    "/materials/{material_id:path}", response_model=MaterialResponse, summary="One material"
)
def material(material_id: MaterialId, view: View) -> MaterialResponse:
    """Candidate (structure), predictions of every model and validations of one material."""
    return material_response(view, material_id)


@router.get("/validations", summary="DFT validations")
def validations(params: Annotated[ValidationParams, Query()], view: View) -> Page[dict]:
    """Validation documents (every state), newest first, optionally of one material or state."""
    docs = view.snapshot().validations
    if params.material_id is not None:
        docs = [doc for doc in docs if doc.material_id == params.material_id]
    if params.state is not None:
        docs = [doc for doc in docs if doc.state == params.state]
    docs = sorted(docs, key=lambda d: d.last_updated, reverse=True)
    page = docs[params.skip : params.skip + params.limit]
    return Page[dict](
        data=[doc.store_dict() for doc in page],
        meta=Meta(total=len(docs), skip=params.skip, limit=params.limit),
    )


@router.get("/runs", response_model=Page[ScreeningRunDoc], summary="Screening runs")
def runs(params: Annotated[PageParams, Query()], view: View) -> Page[ScreeningRunDoc]:
    """Screening runs (campaigns), newest first, with their counts per filter and timings."""
    docs = sorted(view.snapshot().runs, key=lambda d: d.started_at, reverse=True)
    return Page[ScreeningRunDoc](
        data=docs[params.skip : params.skip + params.limit],
        meta=Meta(total=len(docs), skip=params.skip, limit=params.limit),
    )


@router.get("/campaigns", response_model=Page[CampaignDoc], summary="Discovery campaigns")
def campaigns(params: Annotated[PageParams, Query()], view: View) -> Page[CampaignDoc]:
    """Closed-loop campaigns (``anisoscreen campaign``), newest first.

    Each has its settings and rounds: the picks, their DFT results and the model of each
    round. Screening runs are under ``/api/runs``.
    """
    docs = sorted(view.snapshot().campaigns, key=lambda d: d.created_at, reverse=True)
    return Page[CampaignDoc](
        data=docs[params.skip : params.skip + params.limit],
        meta=Meta(total=len(docs), skip=params.skip, limit=params.limit),
    )


@router.get("/campaigns/{name}", response_model=CampaignDoc, summary="One campaign")
def campaign(name: Annotated[str, Path(min_length=1, max_length=64)], view: View) -> CampaignDoc:
    """One campaign by name; 404 when the store has none of that name."""
    for doc in view.snapshot().campaigns:
        if doc.name == name:
            return doc
    raise HTTPException(status_code=404, detail=f"no campaign named {name!r}")


@router.get("", summary="Index of the API")
def index(request: Request) -> dict:
    """Every endpoint of the API with its summary, and where the documentation is."""
    endpoints = [
        {
            "path": path,
            "methods": sorted(method.upper() for method in operations),
            "summary": next(iter(operations.values())).get("summary", ""),
        }
        for path, operations in request.app.openapi()["paths"].items()
        if path.startswith("/api")
    ]
    return {
        "title": request.app.title,
        "version": request.app.version,
        "endpoints": endpoints,
        "docs": "/docs",
        "redoc": "/redoc",
        "openapi": request.app.openapi_url,
    }


@router.get("/summary", response_model=Summary, summary="Store statistics")
def summary(view: View) -> Summary:
    """Counts per collection, state, model, dimensionality; a_r statistics; runs."""
    from anisoscreen.report.overview import run_counts

    snapshot = view.snapshot()
    return Summary(**snapshot.summary_values(), runs=run_counts(snapshot.runs))

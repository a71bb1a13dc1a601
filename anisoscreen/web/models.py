"""Pydantic models of the REST API: validated query parameters and response documents.

Every query parameter reaches the store only through these models. Candidate filters are
:class:`~anisoscreen.query.CandidateQuery` itself (the one filter definition of ``query``,
``table`` and ``plot``), extended with a page (``skip``, ``limit`` capped at
:data:`MAX_PAGE_SIZE`); unknown parameters are rejected, so no raw Mongo query can come in
through the URL. Responses follow the Materials Project API's envelope: ``data`` (a list of
documents) and ``meta`` (totals and the page).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from anisoscreen.query import CandidateQuery, CandidateRow
from anisoscreen.report.cards import CandidateRecord, MaterialCard
from anisoscreen.report.overview import RunCounts
from anisoscreen.schemas import (
    CandidateDoc,
    PredictionDoc,
    ScreeningRunDoc,
    ValidationDoc,
    ValidationState,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "CandidateParams",
    "CandidateRecord",
    "MaterialResponse",
    "Meta",
    "Page",
    "PageParams",
    "Summary",
    "ValidationParams",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
"""Largest page any endpoint returns."""

T = TypeVar("T")


LIMIT_HELP = (
    "At most N records (0: all, as in the CLI's --limit 0, up to the 500 a page holds; "
    "meta.total says how many match)."
)


def _page_size(value: int) -> int:
    """``limit``: 0 means all, as in the CLI, capped at the page size."""
    return MAX_PAGE_SIZE if value == 0 else value


class PageParams(BaseModel):
    """A page of results: skip ``skip`` records, return at most ``limit``."""

    model_config = ConfigDict(extra="forbid")

    skip: int = Field(default=0, ge=0, le=10_000_000, description="Records to skip.")
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=0, le=MAX_PAGE_SIZE, description=LIMIT_HELP)

    @field_validator("limit")
    @classmethod
    def _zero_means_all(cls, value: int) -> int:
        return _page_size(value)


class CandidateParams(PageParams, CandidateQuery):
    """Candidate filters and sort of ``anisoscreen query``, plus a page (:class:`PageParams`).

    ``limit`` is the page size here (0: all, as in the CLI, up to the 500 a page holds);
    ``skip`` pages on. ``elements``,
    ``exclude_elements`` and ``dimensionality`` take repeated parameters or comma-separated
    values (``elements=Mo,S``, ``dimensionality=1,2``).
    """

    def query(self) -> CandidateQuery:
        """The filters and sort, without the page."""
        return CandidateQuery(**self.model_dump(exclude={"skip", "limit"}))


class ValidationParams(PageParams):
    """Filters of the validations endpoint."""

    material_id: str | None = Field(default=None, max_length=1000)
    state: ValidationState | None = None


class Meta(BaseModel):
    """Totals and page of a list response."""

    total: int = Field(description="Records matching the filters.")
    skip: int
    limit: int
    query: str | None = Field(default=None, description="The active filters, in words.")


class Page(BaseModel, Generic[T]):
    """A list response: ``data`` and ``meta``, as in the Materials Project API."""

    data: list[T]
    meta: Meta


class MaterialResponse(BaseModel):
    """Everything stored about one material."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    material_id: str
    card: MaterialCard | None = Field(
        default=None, description="Display values of the newest prediction."
    )
    candidate: dict[str, Any] | None = Field(
        default=None, description="The CandidateDoc (structure)."
    )
    predictions: list[dict[str, Any]]
    validations: list[dict[str, Any]]

    @classmethod
    def of(
        cls,
        material_id: str,
        row: CandidateRow | None,
        candidate: CandidateDoc | None,
        predictions: list[PredictionDoc],
        validations: list[ValidationDoc],
    ) -> MaterialResponse:
        """Assemble the response from the documents of one material."""
        from anisoscreen.report.cards import material_card

        return cls(
            material_id=material_id,
            card=None if row is None else material_card(row, candidate),
            candidate=None if candidate is None else candidate.store_dict(),
            predictions=[doc.store_dict() for doc in predictions],
            validations=[doc.store_dict() for doc in validations],
        )


class Summary(BaseModel):
    """Statistics of the whole store."""

    model_config = ConfigDict(protected_namespaces=())

    counts: dict[str, int] = Field(description="Documents per collection.")
    n_materials: int = Field(description="Materials with a prediction.")
    n_validated: int = Field(description="Materials with a completed DFPT tensor.")
    validation_states: dict[str, int]
    models: dict[str, int] = Field(description="Predictions per model.")
    dimensionality: dict[str, int] = Field(description="Materials per dimensionality.")
    crystal_systems: dict[str, int]
    anisotropy_ratio: dict[str, float] = Field(
        description="min, median, mean, max and 90th percentile of the reported a_r."
    )
    runs: list[RunCounts]


RunsPage = Page[ScreeningRunDoc]

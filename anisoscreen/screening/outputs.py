"""Typed outputs of the screening jobs (their jobflow ``output_schema``).

Each stage returns a small summary (ids, counts, timings); the documents themselves go to the
results store. The next stage receives the summary as a pydantic object (or the same fields as
a dict, e.g. read back from a JobStore), so every field a stage reads is declared here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from anisoscreen.schemas import Dimensionality

__all__ = [
    "CandidateStageOutput",
    "PredictionStageOutput",
    "RankedCandidate",
    "RankingStageOutput",
    "ValidationSelectionOutput",
]


class CandidateStageOutput(BaseModel):
    """What the candidate stage stored: the surviving ids and the counts per filter."""

    material_ids: list[str] = Field(description="Candidates kept, in source order.")
    n_input: int = Field(description="Structures read from the source, readable or not.")
    removed_by: dict[str, int] = Field(description="Structures removed per criterion.")
    criteria: dict[str, Any] = Field(description="The effective criteria and their text.")
    failures: list[dict[str, Any]] = Field(default_factory=list, description="Unreadable inputs.")
    seconds: float = Field(description="Wall time of the stage.")
    n_descriptors_computed: int = Field(
        0,
        description="Structures whose ranking descriptors were computed and cached while the "
        "source was read.",
    )


class PredictionStageOutput(BaseModel):
    """What the prediction stage did with the candidates."""

    material_ids: list[str] = Field(description="Candidates handed to the stage.")
    model: str = Field(description="Model name.")
    model_version: str = Field(description="Model version.")
    model_checksum: str = Field(description="SHA-256 of the model file.")
    n_predicted: int = Field(description="Predictions written by this run.")
    n_reused: int = Field(description="Predictions of the same model already in the store.")
    failures: list[dict[str, Any]] = Field(default_factory=list, description="Per-record errors.")
    ionic_model: str | None = Field(None, description="Ionic model of the set, if any.")
    device: str = Field(description="Device the model ran on.")
    seconds: float = Field(description="Wall time of the stage, descriptors included.")
    n_descriptors_computed: int = Field(
        0, description="Materials whose ranking descriptors this stage computed."
    )
    descriptor_seconds: float = Field(
        0.0,
        description="Wall time the stage spent on descriptors beyond the prediction (part of "
        "``seconds``): waiting for the worker processes that compute them beside the model, "
        "and the pass after it for reused predictions.",
    )


class RankedCandidate(BaseModel):
    """One row of the ranking."""

    material_id: str
    formula: str
    anisotropy_ratio: float
    eps_poly: float
    dimensionality: Dimensionality | None = None
    objective_value: float | None = Field(None, description="What the ranking sorted by.")
    eps_total_poly: float | None = Field(None, description="eps_poly of eps_inf + eps0.")
    eps_total_anisotropy_ratio: float | None = Field(None, description="a_r of eps_inf + eps0.")
    figure_of_merit: float | None = Field(None, description="E_g x eps_poly(total).")
    birefringence: float | None = Field(None, description="dn = n_max - n_min of eps_inf.")
    space_group_symbol: str | None = None


class RankingStageOutput(BaseModel):
    """Predictions of one model ranked by the objective (a_r by default), highest first."""

    model: str = Field(description="Model whose predictions were ranked.")
    objective: str = Field("ar", description="ar, ar-total, eps-total, fom or birefringence.")
    ranking: list[RankedCandidate] = Field(description="Rows, best objective value first.")
    n_descriptors_computed: int = Field(description="Materials whose descriptors were computed.")
    seconds: float = Field(description="Wall time of the stage.")
    top: int = Field(default=10, description="Rows a summary shows.")


class ValidationSelectionOutput(BaseModel):
    """Candidates chosen for DFT validation and those that could not be."""

    selected: list[str] = Field(description="Material ids with a validation flow appended.")
    skipped: list[tuple[str, str]] = Field(
        default_factory=list, description="(material_id, reason) of the candidates left out."
    )

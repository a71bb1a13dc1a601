"""The package's collections: which document each holds, its unique key and its indexes.

The embedded engine indexes the listed fields (each a scalar or missing in every document), so
the queries the package makes (by id, by model, by a_r or figure-of-merit range, by state) run
on an index; the job collections follow jobflow's own keys.
"""

from __future__ import annotations

from anisoscreen.schemas import (
    CampaignDoc,
    CandidateDoc,
    ForceConstantsDoc,
    PredictionDoc,
    RefinementDoc,
    ScreeningRunDoc,
    StructureDescriptorsDoc,
    ValidationDoc,
)

__all__ = ["COLLECTIONS", "INDEXES", "JOB_COLLECTION", "JOB_DATA_COLLECTION", "store_key"]

COLLECTIONS: dict[str, type] = {
    "candidates": CandidateDoc,
    "predictions": PredictionDoc,
    "validations": ValidationDoc,
    "runs": ScreeningRunDoc,
    "campaigns": CampaignDoc,
    "descriptors": StructureDescriptorsDoc,
    "refinements": RefinementDoc,
    "force_constants": ForceConstantsDoc,
}
"""Result collections and the document each one holds."""

JOB_COLLECTION = "jobs"
JOB_DATA_COLLECTION = "jobs_data"

_JOB_KEYS: dict[str, list[str]] = {
    JOB_COLLECTION: ["uuid", "index"],
    JOB_DATA_COLLECTION: ["blob_uuid"],
}

INDEXES: dict[str, list[str]] = {
    "candidates": ["material_id", "source", "formula_pretty", "energy_above_hull", "band_gap"],
    "predictions": [  # the fields of CandidateQuery.criteria (each index costs every write)
        "material_id",
        "model",
        "anisotropy_ratio",
        "figure_of_merit",
        "dimensionality",
        "eps_total.eps_poly",
    ],
    "validations": ["material_id", "job_uuid", "flow_uuid", "state", "calc_type"],
    "runs": ["run_id", "source"],
    "campaigns": ["name"],
    "descriptors": ["structure_hash", "version"],
    "refinements": ["material_id", "model"],
    "force_constants": ["structure_hash", "potential", "version"],
    JOB_COLLECTION: ["uuid", "index", "name", "state"],
    JOB_DATA_COLLECTION: ["blob_uuid", "job_uuid", "job_index"],
}
"""Fields the embedded engine indexes, per collection (without the collection prefix)."""


def store_key(collection: str) -> list[str]:
    """The unique key of ``collection`` (a result collection or a jobflow one)."""
    if collection in COLLECTIONS:
        return list(COLLECTIONS[collection].STORE_KEY)  # type: ignore[attr-defined]
    return list(_JOB_KEYS.get(collection, ["task_id"]))

"""The stored candidates over OPTIMADE: ``serve``'s ``/optimade`` sub-application.

optimade-python-tools' own server (:func:`optimade.server.create_app.create_app`, mongomock
backend) serves every predicted material as a ``structures`` entry: the standard structure
fields from its stored candidate structure (optimade's pymatgen adapter), plus provider
fields with the ``_anisoscreen_`` prefix (:data:`PROVIDER_FIELDS`): the predicted and the DFT
tensor, the ensemble spread, refractive indices, birefringence, a_r, optical character, space
group, model and version, and the validation state. Filters work on them, e.g.
``_anisoscreen_birefringence > 0.3``.

The entries are those of the browser's snapshot of the store
(:class:`~anisoscreen.web.snapshot.ResultsView`): when the snapshot is re-read, the next
OPTIMADE request refills the in-memory collection first.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from anisoscreen import __version__

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from anisoscreen.query import CandidateRow
    from anisoscreen.web.snapshot import ResultsView, Snapshot

__all__ = ["PREFIX", "PROVIDER_FIELDS", "create_optimade_app", "optimade_entries"]

PREFIX = "anisoscreen"
"""The OPTIMADE provider prefix: fields are served as ``_anisoscreen_<name>``."""


_PROVIDER_TABLE: tuple[tuple[str, str, str, str, str | None], ...] = (
    # (name, OPTIMADE type, description, where the value comes from, unit); the source is an
    # attribute path of the CandidateRow ("" for the validation state, made from the states)
    ("birefringence", "float", "dn = n_max - n_min of eps_inf: DFT when validated, else "
     "predicted", "birefringence", None),
    ("predicted_birefringence", "float", "Predicted dn = n_max - n_min",
     "prediction.birefringence", None),
    ("dft_birefringence", "float", "DFT (DFPT) dn, when validated", "dft_birefringence", None),
    ("refractive_indices", "list", "Principal n = sqrt(eigenvalues of eps_inf), ascending: "
     "DFT when validated, else predicted", "refractive_indices", None),
    ("predicted_refractive_indices", "list", "Predicted principal refractive indices",
     "prediction.refractive_indices", None),
    ("anisotropy_ratio", "float", "a_r = lambda_max / lambda_min of eps_inf: DFT when "
     "validated, else predicted", "anisotropy_ratio", None),
    ("predicted_anisotropy_ratio", "float", "Predicted a_r", "prediction.anisotropy_ratio",
     None),
    ("dft_anisotropy_ratio", "float", "DFT a_r, when validated", "dft_anisotropy_ratio", None),
    ("eps_poly", "float", "Polycrystalline eps_inf (mean eigenvalue), reported value",
     "eps_poly", None),
    ("predicted_dielectric_tensor", "list", "Predicted eps_inf, 3x3 (ensemble mean)",
     "prediction.dielectric_tensor", None),
    ("predicted_dielectric_tensor_std", "list", "Ensemble spread of eps_inf, 3x3",
     "prediction.dielectric_tensor_std", None),
    ("dft_dielectric_tensor", "list", "DFPT eps_inf, 3x3, when validated", "dft_tensor", None),
    ("optical_character", "string", "isotropic, uniaxial or biaxial, positive or negative",
     "optical_character", None),
    ("space_group_symbol", "string", "Hermann-Mauguin symbol (spglib, 0.1 A)",
     "prediction.space_group_symbol", None),
    ("space_group_number", "integer", "International space group number",
     "prediction.space_group_number", None),
    ("dimensionality", "integer", "Larsen structural dimensionality 0-3", "dimensionality",
     None),
    ("model", "string", "Model that made the prediction", "prediction.model", None),
    ("model_version", "string", "Version of that model", "prediction.model_version", None),
    ("validation_state", "string", "DFT validation: none, submitted, completed, flagged or "
     "failed", "", None),
    ("energy_above_hull", "float", "Energy above the convex hull",
     "prediction.energy_above_hull", "eV/atom"),
    ("band_gap", "float", "Band gap of the source database", "prediction.band_gap", "eV"),
)  # fmt: skip
"""The one table of provider fields: their OPTIMADE description and where each value comes from."""

PROVIDER_FIELDS: list[dict[str, Any]] = [
    {"name": name, "type": kind, "description": description} | ({"unit": unit} if unit else {})
    for name, kind, description, _, unit in _PROVIDER_TABLE
]
"""The provider fields of ``structures`` (served with the ``_anisoscreen_`` prefix)."""

_STATE_ORDER = ("completed", "flagged", "failed", "submitted")


def _validation_state(states: list[str]) -> str:
    for state in _STATE_ORDER:
        if state in states:
            return state
    return "none"


def _entry(row: CandidateRow, candidate: dict[str, Any], states: list[str]) -> dict[str, Any]:
    """One database document: OPTIMADE attributes plus the unprefixed provider fields."""
    from optimade.adapters import Structure as OptimadeStructure
    from pymatgen.core import Structure

    structure = Structure.from_dict(candidate["structure"])
    attributes = OptimadeStructure.ingest_from(structure).as_dict["attributes"]
    prediction = row.prediction
    updated = prediction.last_updated
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=timezone.utc)
    attributes.update(id=row.material_id, immutable_id=row.material_id, last_modified=updated)
    for name, _, _, path, _ in _PROVIDER_TABLE:
        attributes[name] = attrgetter(path)(row) if path else _validation_state(states)
    return attributes


def optimade_entries(
    snapshot: Snapshot, candidates: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The database documents of every material with a prediction and a stored structure.

    ``candidates`` maps material ids to stored candidate records. Materials whose structure
    is not stored (or not ordered) are left out: an OPTIMADE ``structures`` entry needs its
    sites.
    """
    from anisoscreen.query import CandidateQuery

    states: dict[str, list[str]] = {}
    for doc in snapshot.validations:
        states.setdefault(doc.material_id, []).append(str(doc.state.value))
    entries = []
    for row in snapshot.candidate_rows(CandidateQuery(sort="material_id")):
        candidate = candidates.get(row.material_id)
        if candidate is None or "structure" not in candidate:
            continue
        try:
            entries.append(_entry(row, candidate, states.get(row.material_id, [])))
        except Exception:  # a structure the adapter cannot express: not served
            continue
    return entries


def create_optimade_app(view: ResultsView, base_url: str | None = None) -> FastAPI:
    """optimade-python-tools' server over the stored candidates of ``view``.

    Parameters
    ----------
    view
        The browser's view of the store; its snapshot is what is served.
    base_url
        The public URL of the mount (e.g. ``http://127.0.0.1:8000/optimade``), used for the
        ``links`` of paged answers.
    """
    from optimade.server.config import ServerConfig, SupportedBackend
    from optimade.server.create_app import create_app

    config = ServerConfig(
        database_backend=SupportedBackend.MONGOMOCK,
        insert_test_data=False,
        mongo_database=f"anisoscreen-{uuid.uuid4().hex}",  # one in-memory database per app
        base_url=base_url,
        provider={
            "prefix": PREFIX,
            "name": "anisoscreen",
            "description": "Crystals screened for anisotropic dielectric tensors "
            "(predicted eps_inf, refractive indices, DFPT validations)",
            "homepage": None,
        },
        provider_fields={"structures": PROVIDER_FIELDS},
        implementation={
            "name": "anisoscreen",
            "version": __version__,
            "source_url": None,
            "maintainer": None,
        },
    )
    app = create_app(config, logger_tag="anisoscreen")
    collection = app.state.entry_collections["structures"]
    lock = threading.Lock()
    served: dict[str, Any] = {"snapshot": None}

    def refill() -> None:
        snapshot = view.snapshot()
        with lock:
            if served["snapshot"] is snapshot:
                return
            collection.collection.delete_many({})
            # one streaming read of the stored candidates (the snapshot keeps predictions only)
            candidates = {
                record["material_id"]: record
                for record in view.results.records("candidates")
                if "material_id" in record
            }
            entries = optimade_entries(snapshot, candidates)
            if entries:
                collection.insert(entries)
            served["snapshot"] = snapshot
            served["at"] = datetime.now(timezone.utc)

    @app.middleware("http")
    async def fresh(request, call_next):
        import anyio.to_thread

        await anyio.to_thread.run_sync(refill)
        return await call_next(request)

    app.state.refill = refill
    return app

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
from typing import TYPE_CHECKING, Any

from anisoscreen import __version__

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from anisoscreen.query import CandidateRow
    from anisoscreen.web.snapshot import ResultsView, Snapshot

__all__ = ["PREFIX", "PROVIDER_FIELDS", "create_optimade_app", "optimade_entries"]

PREFIX = "anisoscreen"
"""The OPTIMADE provider prefix: fields are served as ``_anisoscreen_<name>``."""


def _field(name: str, kind: str, description: str, unit: str | None = None) -> dict[str, Any]:
    field = {"name": name, "type": kind, "description": description}
    if unit:
        field["unit"] = unit
    return field


PROVIDER_FIELDS: list[dict[str, Any]] = [
    _field("birefringence", "float", "dn = n_max - n_min of eps_inf: DFT when validated, "
           "else predicted"),
    _field("predicted_birefringence", "float", "Predicted dn = n_max - n_min"),
    _field("dft_birefringence", "float", "DFT (DFPT) dn, when validated"),
    _field("refractive_indices", "list", "Principal n = sqrt(eigenvalues of eps_inf), "
           "ascending: DFT when validated, else predicted"),
    _field("predicted_refractive_indices", "list", "Predicted principal refractive indices"),
    _field("anisotropy_ratio", "float", "a_r = lambda_max / lambda_min of eps_inf: DFT when "
           "validated, else predicted"),
    _field("predicted_anisotropy_ratio", "float", "Predicted a_r"),
    _field("dft_anisotropy_ratio", "float", "DFT a_r, when validated"),
    _field("eps_poly", "float", "Polycrystalline eps_inf (mean eigenvalue), reported value"),
    _field("predicted_dielectric_tensor", "list", "Predicted eps_inf, 3x3 (ensemble mean)"),
    _field("predicted_dielectric_tensor_std", "list", "Ensemble spread of eps_inf, 3x3"),
    _field("dft_dielectric_tensor", "list", "DFPT eps_inf, 3x3, when validated"),
    _field("optical_character", "string", "isotropic, uniaxial or biaxial, positive or "
           "negative"),
    _field("space_group_symbol", "string", "Hermann-Mauguin symbol (spglib, 0.1 A)"),
    _field("space_group_number", "integer", "International space group number"),
    _field("dimensionality", "integer", "Larsen structural dimensionality 0-3"),
    _field("model", "string", "Model that made the prediction"),
    _field("model_version", "string", "Version of that model"),
    _field("validation_state", "string", "DFT validation: none, submitted, completed, "
           "flagged or failed"),
    _field("energy_above_hull", "float", "Energy above the convex hull", "eV/atom"),
    _field("band_gap", "float", "Band gap of the source database", "eV"),
]  # fmt: skip
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
    attributes.update(
        id=row.material_id,
        immutable_id=row.material_id,
        last_modified=updated,
        birefringence=row.birefringence,
        predicted_birefringence=prediction.birefringence,
        dft_birefringence=row.dft_birefringence,
        refractive_indices=row.refractive_indices,
        predicted_refractive_indices=prediction.refractive_indices,
        anisotropy_ratio=row.anisotropy_ratio,
        predicted_anisotropy_ratio=prediction.anisotropy_ratio,
        dft_anisotropy_ratio=row.dft_anisotropy_ratio,
        eps_poly=row.eps_poly,
        predicted_dielectric_tensor=prediction.dielectric_tensor,
        predicted_dielectric_tensor_std=prediction.dielectric_tensor_std,
        dft_dielectric_tensor=row.dft_tensor,
        optical_character=row.optical_character,
        space_group_symbol=prediction.space_group_symbol,
        space_group_number=prediction.space_group_number,
        dimensionality=row.dimensionality,
        model=prediction.model,
        model_version=prediction.model_version,
        validation_state=_validation_state(states),
        energy_above_hull=prediction.energy_above_hull,
        band_gap=prediction.band_gap,
    )
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

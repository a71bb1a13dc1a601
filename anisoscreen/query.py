"""Candidate queries: one filter definition shared by ``query``, ``table`` and ``plot``.

A :class:`CandidateQuery` turns command-line filters into Mongo criteria on the
``predictions`` collection (:meth:`CandidateQuery.criteria`). :func:`find_candidates` runs it
and joins each prediction with the *completed* validations of the same ``material_id`` and
with its ionic refinement (:func:`join_refinement`, the one join of ``query``, ``table``, the
browser and the report) into :class:`CandidateRow` objects, then sorts and truncates them.
A refined row reports the refined static tensor and FOM, labelled by ``ionic_method``
(``physics`` or ``direct``); an unrefined one the network's (``network``).

Filters (``ar_min``, ``ar_max``, ``dimensionality``, elements) act on the prediction
documents, so a material is selected by what the model predicted for it; sorting can use
either the predicted or the DFT values (the static-tensor keys sort by the reported, i.e.
refined where refined, values; their filters act on the network's). When no ``model`` is given
and a material has predictions from several models, the newest prediction is used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import (
    PredictionDoc,
    RefinementDoc,
    TensorPrediction,
    ValidationDoc,
    ValidationState,
)

if TYPE_CHECKING:  # pragma: no cover
    from anisoscreen.store import ResultsStore

__all__ = [
    "SORT_FIELDS",
    "CandidateQuery",
    "CandidateRow",
    "QueryError",
    "find_candidates",
    "index_refinements",
    "join_refinement",
    "join_validations",
    "parse_elements",
]

SortField = Literal[
    "ar",
    "predicted_ar",
    "dft_ar",
    "eps_poly",
    "predicted_eps_poly",
    "dft_eps_poly",
    "energy_above_hull",
    "band_gap",
    "material_id",
    "formula",
    "ar_spread",
    "predicted_eps_ionic",
    "predicted_eps_total",
    "predicted_ar_total",
    "fom",
    "dft_eps_ionic",
    "dft_eps_total",
    "birefringence",
    "predicted_birefringence",
    "dft_birefringence",
    "birefringence_spread",
]

SORT_FIELDS: dict[str, str] = {
    "ar": "a_r reported: DFT when validated, else predicted (descending)",
    "predicted_ar": "predicted a_r (descending)",
    "dft_ar": "DFT a_r, unvalidated rows last (descending)",
    "eps_poly": "eps_poly reported: DFT when validated, else predicted (descending)",
    "predicted_eps_poly": "predicted eps_poly (descending)",
    "dft_eps_poly": "DFT eps_poly, unvalidated rows last (descending)",
    "energy_above_hull": "energy above hull (ascending)",
    "band_gap": "band gap (descending)",
    "material_id": "material id (ascending)",
    "formula": "reduced formula (ascending)",
    "ar_spread": "ensemble spread (std) of the predicted a_r (descending)",
    "predicted_eps_ionic": "predicted ionic eps_poly (descending; needs an ionic model)",
    "predicted_eps_total": "predicted static eps_poly, eps_inf + eps0 (descending)",
    "predicted_ar_total": "predicted a_r of the static tensor (descending)",
    "fom": "high-kappa FOM = E_g x predicted static eps_poly (descending)",
    "dft_eps_ionic": "DFPT ionic eps_poly, unvalidated rows last (descending)",
    "dft_eps_total": "DFPT static eps_poly, unvalidated rows last (descending)",
    "birefringence": "birefringence dn = n_max - n_min: DFT when validated, else predicted "
    "(descending)",
    "predicted_birefringence": "predicted birefringence (descending)",
    "dft_birefringence": "DFT birefringence, unvalidated rows last (descending)",
    "birefringence_spread": "ensemble spread (std) of the predicted birefringence (descending)",
}
"""Sort keys understood by :class:`CandidateQuery` and their default direction."""

_ASCENDING_BY_DEFAULT = {"energy_above_hull", "material_id", "formula"}


class QueryError(AnisoscreenError):
    """A candidate query that cannot be built (unknown element, empty range...)."""


def parse_elements(values: Iterable[str] | str | None) -> list[str]:
    """Normalise element symbols given as a list and/or comma/space separated strings.

    ``["si,o", "Fe"]`` becomes ``["Fe", "O", "Si"]`` (sorted, unique). Unknown symbols raise
    ``ValueError``.
    """
    from pymatgen.core import Element

    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    symbols: set[str] = set()
    for value in values:
        for token in str(value).replace(",", " ").split():
            symbol = token.strip().capitalize()
            if not Element.is_valid_symbol(symbol):
                raise ValueError(f"unknown element symbol {token!r}")
            symbols.add(symbol)
    return sorted(symbols)


class CandidateQuery(BaseModel):
    """Filters, sort order and limit of a candidate query.

    Parameters
    ----------
    ar_min, ar_max
        Bounds (inclusive) on the predicted anisotropy ratio.
    dimensionality
        Keep materials whose structural dimensionality is one of these (0-3).
    elements
        Every one of these elements must be present.
    exclude_elements
        None of these elements may be present.
    eps_total_min
        Smallest predicted static eps_poly (needs predictions with an ionic model).
    fom_min
        Smallest high-kappa figure of merit E_g x eps_poly(total).
    dn_min
        Smallest predicted birefringence dn = n_max - n_min.
    model
        Only predictions of this model (default: the newest prediction of each material).
    validated_only
        Keep only materials with a completed DFT validation.
    sort
        Sort key, one of :data:`SORT_FIELDS`.
    descending
        Sort direction; ``None`` uses the key's natural direction (see :data:`SORT_FIELDS`).
    limit
        Maximum number of rows (0: no limit).
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    ar_min: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    ar_max: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    dimensionality: list[int] = Field(default_factory=list)
    elements: list[str] = Field(default_factory=list)
    exclude_elements: list[str] = Field(default_factory=list)
    eps_total_min: float | None = Field(default=None, allow_inf_nan=False)
    fom_min: float | None = Field(default=None, allow_inf_nan=False)
    dn_min: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    model: str | None = None
    validated_only: bool = False
    sort: SortField = "ar"
    descending: bool | None = None
    limit: int = Field(default=0, ge=0)

    @field_validator("elements", "exclude_elements", mode="before")
    @classmethod
    def _elements(cls, value: Any) -> list[str]:
        return parse_elements(value)

    @field_validator("dimensionality", mode="before")
    @classmethod
    def _dimensionality(cls, value: Any) -> list[int]:
        if value is None:
            return []
        if isinstance(value, (int, str)):
            value = [value]
        dims = []
        for item in value:
            for token in str(getattr(item, "value", item)).replace(",", " ").split():
                dim = int(token.upper().removesuffix("D"))
                if dim not in (0, 1, 2, 3):
                    raise ValueError(f"dimensionality must be 0, 1, 2 or 3, got {token!r}")
                dims.append(dim)
        return sorted(set(dims))

    @model_validator(mode="after")
    def _consistent(self) -> CandidateQuery:
        if self.ar_min is not None and self.ar_max is not None and self.ar_min > self.ar_max:
            raise ValueError(f"ar_min ({self.ar_min}) is larger than ar_max ({self.ar_max})")
        both = set(self.elements) & set(self.exclude_elements)
        if both:
            raise ValueError(f"elements both required and excluded: {', '.join(sorted(both))}")
        return self

    @classmethod
    def build(cls, **fields: Any) -> CandidateQuery:
        """Build a query from (CLI) values; ``None`` means "not given".

        Raises
        ------
        QueryError
            With one readable line per invalid field.
        """
        try:
            return cls(**{k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'query'}: "
                f"{str(err['msg']).removeprefix('Value error, ')}"
                for err in exc.errors()
            )
            raise QueryError(f"invalid query: {problems}") from None

    @property
    def is_descending(self) -> bool:
        """Effective sort direction."""
        if self.descending is not None:
            return self.descending
        return self.sort not in _ASCENDING_BY_DEFAULT

    def criteria(self, material_ids: Iterable[str] | None = None) -> dict[str, Any]:
        """Mongo criteria on the ``predictions`` collection.

        Parameters
        ----------
        material_ids
            Restrict to these ids (used for ``validated_only``).
        """
        criteria: dict[str, Any] = {}
        ratio: dict[str, float] = {}
        if self.ar_min is not None:
            ratio["$gte"] = self.ar_min
        if self.ar_max is not None:
            ratio["$lte"] = self.ar_max
        if ratio:
            criteria["anisotropy_ratio"] = ratio
        if self.dimensionality:
            criteria["dimensionality"] = {"$in": list(self.dimensionality)}
        elements: dict[str, list[str]] = {}
        if self.elements:
            elements["$all"] = list(self.elements)
        if self.exclude_elements:
            elements["$nin"] = list(self.exclude_elements)
        if elements:
            criteria["elements"] = elements
        if self.eps_total_min is not None:
            criteria["eps_total.eps_poly"] = {"$gte": self.eps_total_min}
        if self.fom_min is not None:
            criteria["figure_of_merit"] = {"$gte": self.fom_min}
        if self.dn_min is not None:
            criteria["birefringence"] = {"$gte": self.dn_min}
        if self.model:
            criteria["model"] = self.model
        if material_ids is not None:
            criteria["material_id"] = {"$in": sorted(set(material_ids))}
        return criteria

    def describe(self) -> str:
        """A short human-readable summary of the active filters."""
        parts = []
        if self.ar_min is not None:
            parts.append(f"a_r >= {self.ar_min:g}")
        if self.ar_max is not None:
            parts.append(f"a_r <= {self.ar_max:g}")
        if self.dimensionality:
            parts.append("dimensionality " + "/".join(f"{d}D" for d in self.dimensionality))
        if self.elements:
            parts.append("with " + ",".join(self.elements))
        if self.exclude_elements:
            parts.append("without " + ",".join(self.exclude_elements))
        if self.eps_total_min is not None:
            parts.append(f"eps_total >= {self.eps_total_min:g}")
        if self.fom_min is not None:
            parts.append(f"FOM >= {self.fom_min:g}")
        if self.dn_min is not None:
            parts.append(f"dn >= {self.dn_min:g}")
        if self.model:
            parts.append(f"model {self.model}")
        if self.validated_only:
            parts.append("validated only")
        return ", ".join(parts) or "no filters"


class CandidateRow(BaseModel):
    """One material: its prediction, completed DFT validations (newest first), refinement.

    The static-tensor values (``predicted_eps_ionic``, ``predicted_eps_total``,
    ``predicted_ar_total``, ``figure_of_merit``) are those of :attr:`ionic_method`: the
    refinement's when the prediction has one, else the network's.
    """

    model_config = ConfigDict(protected_namespaces=())

    prediction: PredictionDoc
    validations: list[ValidationDoc] = Field(default_factory=list)
    refinement: RefinementDoc | None = Field(
        default=None, description="The ionic refinement of this prediction, if any."
    )

    # -- identity -------------------------------------------------------------------------
    @property
    def material_id(self) -> str:
        return self.prediction.material_id

    @property
    def formula(self) -> str:
        return self.prediction.formula_pretty

    @property
    def model(self) -> str:
        return self.prediction.model

    # -- validation -----------------------------------------------------------------------
    @property
    def dfpt(self) -> ValidationDoc | None:
        """Newest completed validation with a DFPT tensor, if any."""
        return next((v for v in self.validations if v.epsilon_electronic is not None), None)

    @property
    def optics_validation(self) -> ValidationDoc | None:
        """Newest completed validation with a frequency-dependent dielectric function."""
        return next((v for v in self.validations if v.optics), None)

    @property
    def validated(self) -> bool:
        """Whether a completed DFPT tensor exists for this material."""
        return self.dfpt is not None

    @property
    def in_training_split(self) -> bool:
        """Whether the DFPT result's material was in a model's training split."""
        doc = self.dfpt
        return doc is not None and bool(doc.in_training_split)

    @property
    def dft_tensor(self) -> list[list[float]] | None:
        doc = self.dfpt
        return doc.epsilon_electronic if doc else None

    @property
    def dft_anisotropy_ratio(self) -> float | None:
        doc = self.dfpt
        if doc is None:
            return None
        if doc.anisotropy_ratio is not None:
            return doc.anisotropy_ratio
        from anisoscreen import tensor as tmath

        return tmath.summarize(doc.epsilon_electronic).anisotropy_ratio

    @property
    def dft_eps_poly(self) -> float | None:
        doc = self.dfpt
        if doc is None:
            return None
        if doc.eps_poly is not None:
            return doc.eps_poly
        from anisoscreen import tensor as tmath

        return float(tmath.polycrystalline_average(doc.epsilon_electronic))

    @property
    def dft_ionic_tensor(self) -> list[list[float]] | None:
        """DFPT ionic tensor of the newest completed DFPT validation."""
        doc = self.dfpt
        return doc.epsilon_ionic if doc else None

    @property
    def dft_total_tensor(self) -> list[list[float]] | None:
        """DFPT static tensor (eps_inf + ionic) of the newest completed DFPT validation."""
        doc = self.dfpt
        if doc is None:
            return None
        if doc.epsilon_total is not None:
            return doc.epsilon_total
        if doc.epsilon_ionic is None or doc.epsilon_electronic is None:
            return None
        import numpy as np

        return (np.array(doc.epsilon_electronic) + np.array(doc.epsilon_ionic)).tolist()

    @property
    def dft_eps_ionic(self) -> float | None:
        tensor = self.dft_ionic_tensor
        return None if tensor is None else _poly(tensor)

    @property
    def dft_eps_total(self) -> float | None:
        tensor = self.dft_total_tensor
        return None if tensor is None else _poly(tensor)

    # -- the static tensor (with an ionic model, refined where refined) -------------------
    @property
    def refined(self) -> RefinementDoc | None:
        """The refinement when it gives the static values (it has a static tensor)."""
        doc = self.refinement
        return doc if doc is not None and doc.eps_total is not None else None

    @property
    def ionic_method(self) -> str | None:
        """Where the static values come from.

        ``physics`` or ``direct`` (the refine stage), ``network`` (the prediction's ionic
        model), ``None`` (no ionic value).
        """
        refined = self.refined
        if refined is not None:
            return refined.ionic_method
        return "network" if self.prediction.eps_total is not None else None

    @property
    def ionic_tensor(self) -> TensorPrediction | None:
        """eps0 of :attr:`ionic_method`."""
        refined = self.refined
        return self.prediction.eps_ionic if refined is None else refined.ionic

    @property
    def total_tensor(self) -> TensorPrediction | None:
        """The static tensor eps_inf + eps0 of :attr:`ionic_method`."""
        refined = self.refined
        return self.prediction.eps_total if refined is None else refined.total

    @property
    def predicted_eps_ionic(self) -> float | None:
        ionic = self.ionic_tensor
        return None if ionic is None else ionic.eps_poly

    @property
    def predicted_eps_total(self) -> float | None:
        total = self.total_tensor
        return None if total is None else total.eps_poly

    @property
    def predicted_ar_total(self) -> float | None:
        total = self.total_tensor
        return None if total is None else total.anisotropy_ratio

    @property
    def figure_of_merit(self) -> float | None:
        """E_g x static eps_poly of :attr:`ionic_method`."""
        refined = self.refined
        return self.prediction.figure_of_merit if refined is None else refined.figure_of_merit

    # -- optics ---------------------------------------------------------------------------
    @property
    def dft_birefringence(self) -> float | None:
        doc = self.dfpt
        return None if doc is None else doc.birefringence

    @property
    def birefringence(self) -> float | None:
        """Birefringence reported: DFT when validated, else predicted."""
        value = self.dft_birefringence
        return self.prediction.birefringence if value is None else value

    @property
    def refractive_indices(self) -> list[float] | None:
        """Principal refractive indices reported: DFT when validated, else predicted."""
        doc = self.dfpt
        if doc is not None and doc.refractive_indices is not None:
            return doc.refractive_indices
        return self.prediction.refractive_indices

    @property
    def optical_character(self) -> str | None:
        """Optical character reported: DFT when validated, else predicted."""
        doc = self.dfpt
        if doc is not None and doc.optical_character is not None:
            return doc.optical_character
        return self.prediction.optical_character

    # -- reported values: DFT when validated, else predicted -----------------------------
    @property
    def tensor(self) -> list[list[float]]:
        return self.dft_tensor or self.prediction.dielectric_tensor

    @property
    def anisotropy_ratio(self) -> float:
        value = self.dft_anisotropy_ratio
        return self.prediction.anisotropy_ratio if value is None else value

    @property
    def eps_poly(self) -> float:
        value = self.dft_eps_poly
        return self.prediction.eps_poly if value is None else value

    # -- prediction-side descriptors ------------------------------------------------------
    @property
    def dimensionality(self) -> int | None:
        dim = self.prediction.dimensionality
        return None if dim is None else int(dim)

    @property
    def elements(self) -> list[str]:
        return list(self.prediction.elements)

    @property
    def energy_above_hull(self) -> float | None:
        return self.prediction.energy_above_hull

    @property
    def band_gap(self) -> float | None:
        return self.prediction.band_gap

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-ready record (for ``query --json`` and CSV-like output)."""
        return {
            "material_id": self.material_id,
            "formula": self.formula,
            "model": self.model,
            "validated": self.validated,
            "anisotropy_ratio": self.anisotropy_ratio,
            "eps_poly": self.eps_poly,
            "predicted_anisotropy_ratio": self.prediction.anisotropy_ratio,
            "predicted_eps_poly": self.prediction.eps_poly,
            "dft_anisotropy_ratio": self.dft_anisotropy_ratio,
            "dft_eps_poly": self.dft_eps_poly,
            "dimensionality": self.dimensionality,
            "energy_above_hull": self.energy_above_hull,
            "band_gap": self.band_gap,
            "crystal_system": self.prediction.crystal_system,
            "elements": self.elements,
            "ionic_method": self.ionic_method,
            "predicted_eps_ionic": self.predicted_eps_ionic,
            "predicted_eps_total": self.predicted_eps_total,
            "predicted_ar_total": self.predicted_ar_total,
            "figure_of_merit": self.figure_of_merit,
            "dft_eps_ionic": self.dft_eps_ionic,
            "dft_eps_total": self.dft_eps_total,
            "birefringence": self.birefringence,
            "predicted_birefringence": self.prediction.birefringence,
            "predicted_birefringence_std": self.prediction.birefringence_std,
            "dft_birefringence": self.dft_birefringence,
            "optical_character": self.optical_character,
            "space_group_symbol": self.prediction.space_group_symbol,
            "space_group_number": self.prediction.space_group_number,
        }

    def details(self) -> dict[str, Any]:
        """:meth:`summary` plus the tensors, their spread and the optics (``query -f json``)."""
        prediction = self.prediction
        return {
            **self.summary(),
            "refractive_indices": self.refractive_indices,
            "predicted_refractive_indices": prediction.refractive_indices,
            "dft_refractive_indices": self.dfpt.refractive_indices if self.dfpt else None,
            "optic_axial_angle": prediction.optic_axial_angle,
            "optic_axes": prediction.optic_axes,
            "lattice_parameters": prediction.lattice_parameters,
            "predicted_dielectric_tensor": prediction.dielectric_tensor,
            "predicted_dielectric_tensor_std": prediction.dielectric_tensor_std,
            "predicted_anisotropy_ratio_std": prediction.anisotropy_ratio_std,
            "predicted_eps_poly_std": prediction.eps_poly_std,
            "n_models": prediction.n_models,
            "dft_dielectric_tensor": self.dft_tensor,
            **self._static_details(),
        }

    def _static_details(self) -> dict[str, Any]:
        """The static tensors of :attr:`ionic_method`, the network's, and the refinement."""
        ionic, total = self.ionic_tensor, self.total_tensor
        network = self.prediction.eps_total
        refinement = self.refinement
        return {
            "predicted_eps_ionic_tensor": None if ionic is None else ionic.tensor,
            "predicted_eps_total_tensor": None if total is None else total.tensor,
            "predicted_eps_total_eigenvalues": None if total is None else total.eigenvalues,
            "network_eps_total": None if network is None else network.eps_poly,
            "network_figure_of_merit": self.prediction.figure_of_merit,
            "refinement": None
            if refinement is None
            else refinement.model_dump(mode="json", exclude={"last_updated"}),
        }

    def sort_value(self, field: str) -> Any:
        """The value this row is sorted by for ``field`` (``None`` when unknown)."""
        getters = {
            "ar": lambda: self.anisotropy_ratio,
            "predicted_ar": lambda: self.prediction.anisotropy_ratio,
            "dft_ar": lambda: self.dft_anisotropy_ratio,
            "eps_poly": lambda: self.eps_poly,
            "predicted_eps_poly": lambda: self.prediction.eps_poly,
            "dft_eps_poly": lambda: self.dft_eps_poly,
            "energy_above_hull": lambda: self.energy_above_hull,
            "band_gap": lambda: self.band_gap,
            "material_id": lambda: self.material_id,
            "formula": lambda: self.formula,
            "ar_spread": lambda: self.prediction.anisotropy_ratio_std,
            "predicted_eps_ionic": lambda: self.predicted_eps_ionic,
            "predicted_eps_total": lambda: self.predicted_eps_total,
            "predicted_ar_total": lambda: self.predicted_ar_total,
            "fom": lambda: self.figure_of_merit,
            "dft_eps_ionic": lambda: self.dft_eps_ionic,
            "dft_eps_total": lambda: self.dft_eps_total,
            "birefringence": lambda: self.birefringence,
            "predicted_birefringence": lambda: self.prediction.birefringence,
            "dft_birefringence": lambda: self.dft_birefringence,
            "birefringence_spread": lambda: self.prediction.birefringence_std,
        }
        return getters[field]()


def _poly(tensor: list[list[float]]) -> float:
    from anisoscreen import tensor as tmath

    return float(tmath.polycrystalline_average(tensor))


def _newest_first(docs: Iterable[Any]) -> list[Any]:
    return sorted(docs, key=lambda d: d.last_updated, reverse=True)


RefinementIndex = Mapping[tuple[str, str], RefinementDoc]
"""Refinements by (material_id, model), as :func:`index_refinements` makes them."""


def index_refinements(refinements: Iterable[RefinementDoc]) -> dict[tuple[str, str], RefinementDoc]:
    """Refinements by their store key (material_id, model), for :func:`join_refinement`."""
    return {(doc.material_id, doc.model): doc for doc in refinements}


def join_refinement(
    prediction: PredictionDoc, refinements: RefinementIndex
) -> RefinementDoc | None:
    """The ionic refinement of exactly this prediction, if any.

    The one join of a prediction with the refine stage's row, used by ``query``, ``table``,
    the browser and the report. A refinement counts only when it was made from this
    prediction's model set (same model name and checksums): a material re-predicted by a
    changed model set shows the network's values until it is refined again.
    """
    doc = refinements.get((prediction.material_id, prediction.model))
    return doc if doc is not None and doc.refines(prediction) else None


def join_validations(
    predictions: Sequence[PredictionDoc],
    validations: Iterable[ValidationDoc],
    refinements: Iterable[RefinementDoc] = (),
) -> list[CandidateRow]:
    """Pair predictions with the completed validations of the same material and a refinement.

    Validations in any other state (submitted, flagged, failed) are ignored. When several
    predictions exist for one material (several models), only the newest is kept; it is
    joined with its refinement by :func:`join_refinement`.
    """
    by_material: dict[str, list[ValidationDoc]] = {}
    for validation in validations:
        if validation.state == ValidationState.COMPLETED:
            by_material.setdefault(validation.material_id, []).append(validation)
    newest: dict[str, PredictionDoc] = {}
    for doc in predictions:
        kept = newest.get(doc.material_id)
        if kept is None or (doc.created_at, doc.last_updated) > (
            kept.created_at,
            kept.last_updated,
        ):
            newest[doc.material_id] = doc
    refined = index_refinements(refinements)
    return [
        CandidateRow(
            prediction=doc,
            validations=_newest_first(by_material.get(mid, [])),
            refinement=join_refinement(doc, refined),
        )
        for mid, doc in newest.items()
    ]


def sort_rows(rows: list[CandidateRow], field: str, descending: bool) -> list[CandidateRow]:
    """Sort rows by ``field``; rows without a value go last, ties by material id."""

    def missing(value: Any) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    present = [r for r in rows if not missing(r.sort_value(field))]
    absent = [r for r in rows if missing(r.sort_value(field))]
    present.sort(key=lambda r: r.material_id)
    present.sort(key=lambda r: r.sort_value(field), reverse=descending)
    absent.sort(key=lambda r: r.material_id)
    return present + absent


def find_candidates(
    results: ResultsStore, query: CandidateQuery | None = None
) -> list[CandidateRow]:
    """Run ``query`` on a results store and return joined, sorted, truncated rows."""
    query = query or CandidateQuery()
    validations = results.query(ValidationDoc, {"state": ValidationState.COMPLETED.value})
    ids = None
    if query.validated_only:
        ids = {v.material_id for v in validations if v.epsilon_electronic is not None}
        if not ids:
            return []
    # dn is filtered after reading: documents stored before it existed derive it on read
    predictions = results.query(
        PredictionDoc, query.model_copy(update={"dn_min": None}).criteria(ids)
    )
    if query.dn_min is not None:
        dn_min = query.dn_min
        predictions = [
            p for p in predictions if p.birefringence is not None and p.birefringence >= dn_min
        ]
    refinements = results.query(RefinementDoc)  # the top of a few rankings: small
    rows = join_validations(predictions, validations, refinements)
    if query.validated_only:
        rows = [row for row in rows if row.validated]
    rows = sort_rows(rows, query.sort, query.is_descending)
    return rows[: query.limit] if query.limit else rows

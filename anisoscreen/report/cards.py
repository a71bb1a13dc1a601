"""Material cards: what the web pages and the HTML report show about one candidate.

A :class:`CandidateRecord` is one flat row of the candidates table (API and pages); a
:class:`MaterialCard` flattens a :class:`~anisoscreen.query.CandidateRow` (prediction plus
completed validations) into display-ready values: the predicted tensor with its eigenvalues,
principal axes and ensemble spread, the DFPT tensor and a_r beside it when validated, the
dimensionality, crystal system and robocrys description.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anisoscreen import tensor as tmath
from anisoscreen.query import CandidateRow
from anisoscreen.report.optics import principal_axes

__all__ = ["CandidateRecord", "MaterialCard", "TensorView", "material_card", "mp_url"]

Matrix3 = list[list[float]]

_MP_ID = re.compile(r"^mp-\d+$")


def mp_url(material_id: str) -> str | None:
    """The Materials Project page of an MP id (``None`` for other ids)."""
    if not _MP_ID.match(material_id):
        return None
    return f"https://next-gen.materialsproject.org/materials/{material_id}"


class TensorView(BaseModel):
    """A 3x3 tensor with its eigenvalues, principal axes (rows) and optics.

    With the lattice, the principal and optic axes are also given as lattice directions
    ``[u, v, w]`` (largest component 1).
    """

    tensor: Matrix3
    eigenvalues: list[float]
    principal_axes: Matrix3
    eps_poly: float
    anisotropy_ratio: float
    refractive_indices: list[float] | None = None
    birefringence: float | None = None
    optical_character: str | None = None
    optic_axial_angle: float | None = None
    principal_axes_crystal: Matrix3 | None = None
    optic_axes_crystal: list[list[float]] | None = None

    @classmethod
    def of(cls, tensor: Matrix3, lattice_matrix: Any = None) -> TensorView:
        """Decompose a symmetric 3x3 tensor (``lattice_matrix``: rows are a, b, c)."""
        values, vectors = principal_axes(tensor)
        fields: dict[str, Any] = {}
        try:
            optics = tmath.optical_properties(tensor)
        except tmath.TensorValidationError:
            optics = None
        if optics is not None:
            fields = {
                "refractive_indices": optics.refractive_indices.tolist(),
                "birefringence": optics.birefringence,
                "optical_character": optics.character,
                "optic_axial_angle": optics.optic_axial_angle,
            }
            if lattice_matrix is not None:
                fields["optic_axes_crystal"] = [
                    _direction(axis, lattice_matrix) for axis in optics.optic_axes
                ]
        if lattice_matrix is not None:
            fields["principal_axes_crystal"] = [
                _direction(axis, lattice_matrix) for axis in vectors.T
            ]
        return cls(
            tensor=[[float(v) for v in line] for line in tensor],
            eigenvalues=[float(v) for v in values],
            principal_axes=vectors.T.tolist(),
            eps_poly=float(values.mean()),
            anisotropy_ratio=float(values[-1] / values[0]),
            **fields,
        )


def _direction(axis: Any, lattice_matrix: Any) -> list[float]:
    return np.round(tmath.cartesian_to_crystal_direction(axis, lattice_matrix), 3).tolist()


class MaterialCard(BaseModel):
    """Display values of one candidate (see the module docstring)."""

    model_config = ConfigDict(protected_namespaces=())

    material_id: str
    formula: str
    model: str
    model_version: str
    n_models: int
    predicted: TensorView
    predicted_std: Matrix3 | None = None
    anisotropy_ratio_std: float | None = None
    eps_poly_std: float | None = None
    dft: TensorView | None = None
    dft_job_uuid: str | None = None
    dimensionality: int | None = None
    crystal_system: str | None = None
    description: str | None = None
    energy_above_hull: float | None = None
    band_gap: float | None = None
    elements: list[str] = []
    has_optics: bool = False
    birefringence_std: float | None = None
    space_group_symbol: str | None = None
    space_group_number: int | None = None
    lattice_parameters: dict[str, float] | None = None
    mp_url: str | None = Field(None, description="The Materials Project page (MP ids only).")

    @property
    def validated(self) -> bool:
        """Whether a DFPT tensor is shown beside the prediction."""
        return self.dft is not None


def material_card(row: CandidateRow, candidate: Any = None) -> MaterialCard:
    """The card of one candidate row; ``candidate`` (a CandidateDoc) adds the crystal axes."""
    prediction = row.prediction
    dfpt = row.dfpt
    lattice = None if candidate is None else candidate.structure.lattice.matrix
    return MaterialCard(
        material_id=row.material_id,
        formula=row.formula,
        model=prediction.model,
        model_version=prediction.model_version,
        n_models=prediction.n_models,
        predicted=TensorView.of(prediction.dielectric_tensor, lattice),
        predicted_std=prediction.dielectric_tensor_std,
        anisotropy_ratio_std=prediction.anisotropy_ratio_std,
        eps_poly_std=prediction.eps_poly_std,
        dft=None
        if dfpt is None or dfpt.epsilon_electronic is None
        else TensorView.of(dfpt.epsilon_electronic, lattice),
        dft_job_uuid=None if dfpt is None else dfpt.job_uuid,
        dimensionality=row.dimensionality,
        crystal_system=prediction.crystal_system,
        description=prediction.description,
        energy_above_hull=row.energy_above_hull,
        band_gap=row.band_gap,
        elements=row.elements,
        has_optics=row.optics_validation is not None,
        birefringence_std=prediction.birefringence_std,
        space_group_symbol=prediction.space_group_symbol,
        space_group_number=prediction.space_group_number,
        lattice_parameters=prediction.lattice_parameters
        or getattr(candidate, "lattice_parameters", None),
        mp_url=mp_url(row.material_id),
    )


class CandidateRecord(BaseModel):
    """One row of the candidates table (prediction joined with its DFPT validation)."""

    model_config = ConfigDict(protected_namespaces=())

    material_id: str
    formula: str
    model: str
    validated: bool
    anisotropy_ratio: float = Field(description="DFT a_r when validated, else predicted.")
    eps_poly: float = Field(description="DFT eps_poly when validated, else predicted.")
    predicted_anisotropy_ratio: float
    predicted_eps_poly: float
    anisotropy_ratio_std: float | None = Field(default=None, description="Ensemble spread of a_r.")
    eps_poly_std: float | None = None
    dft_anisotropy_ratio: float | None = None
    dft_eps_poly: float | None = None
    dimensionality: int | None = None
    crystal_system: str | None = None
    energy_above_hull: float | None = None
    band_gap: float | None = None
    elements: list[str] = []
    birefringence: float | None = Field(
        default=None, description="dn = n_max - n_min: DFT when validated, else predicted."
    )
    predicted_birefringence: float | None = None
    predicted_birefringence_std: float | None = None
    dft_birefringence: float | None = None
    optical_character: str | None = None
    space_group_symbol: str | None = None
    space_group_number: int | None = None

    @classmethod
    def of(cls, row: CandidateRow) -> CandidateRecord:
        """The record of one joined candidate row."""
        return cls(
            **row.summary(),
            anisotropy_ratio_std=row.prediction.anisotropy_ratio_std,
            eps_poly_std=row.prediction.eps_poly_std,
        )

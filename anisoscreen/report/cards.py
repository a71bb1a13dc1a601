"""Material cards: what the web pages and the HTML report show about one candidate.

A :class:`CandidateRecord` is one flat row of the candidates table (API and pages); a
:class:`MaterialCard` flattens a :class:`~anisoscreen.query.CandidateRow` (prediction plus
completed validations) into display-ready values: the predicted tensor with its eigenvalues,
principal axes and ensemble spread, the DFPT tensor and a_r beside it when validated, the
dimensionality, crystal system and robocrys description.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from anisoscreen.query import CandidateRow
from anisoscreen.report.optics import principal_axes

__all__ = ["CandidateRecord", "MaterialCard", "TensorView", "material_card"]

Matrix3 = list[list[float]]


class TensorView(BaseModel):
    """A 3x3 tensor with its ascending eigenvalues and unit principal axes (rows)."""

    tensor: Matrix3
    eigenvalues: list[float]
    principal_axes: Matrix3
    eps_poly: float
    anisotropy_ratio: float

    @classmethod
    def of(cls, tensor: Matrix3) -> TensorView:
        """Decompose a symmetric 3x3 tensor."""
        values, vectors = principal_axes(tensor)
        return cls(
            tensor=[[float(v) for v in line] for line in tensor],
            eigenvalues=[float(v) for v in values],
            principal_axes=vectors.T.tolist(),
            eps_poly=float(values.mean()),
            anisotropy_ratio=float(values[-1] / values[0]),
        )


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

    @property
    def validated(self) -> bool:
        """Whether a DFPT tensor is shown beside the prediction."""
        return self.dft is not None


def material_card(row: CandidateRow) -> MaterialCard:
    """The card of one candidate row."""
    prediction = row.prediction
    dfpt = row.dfpt
    return MaterialCard(
        material_id=row.material_id,
        formula=row.formula,
        model=prediction.model,
        model_version=prediction.model_version,
        n_models=prediction.n_models,
        predicted=TensorView.of(prediction.dielectric_tensor),
        predicted_std=prediction.dielectric_tensor_std,
        anisotropy_ratio_std=prediction.anisotropy_ratio_std,
        eps_poly_std=prediction.eps_poly_std,
        dft=None
        if dfpt is None or dfpt.epsilon_electronic is None
        else TensorView.of(dfpt.epsilon_electronic),
        dft_job_uuid=None if dfpt is None else dfpt.job_uuid,
        dimensionality=row.dimensionality,
        crystal_system=prediction.crystal_system,
        description=prediction.description,
        energy_above_hull=row.energy_above_hull,
        band_gap=row.band_gap,
        elements=row.elements,
        has_optics=row.optics_validation is not None,
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

    @classmethod
    def of(cls, row: CandidateRow) -> CandidateRecord:
        """The record of one joined candidate row."""
        return cls(
            **row.summary(),
            anisotropy_ratio_std=row.prediction.anisotropy_ratio_std,
            eps_poly_std=row.prediction.eps_poly_std,
        )

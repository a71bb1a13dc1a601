"""Material cards: what the web pages and the HTML report show about one candidate.

A :class:`CandidateRecord` is one flat row of the candidates table (API and pages); a
:class:`MaterialCard` flattens a :class:`~anisoscreen.query.CandidateRow` (prediction plus
completed validations) into display-ready values: the predicted tensor with its eigenvalues,
principal axes and ensemble spread, the DFPT tensor and a_r beside it when validated, the
dimensionality, crystal system and robocrys description, and, with an ionic model, the static
tensor labelled by the method of its eps0 (:class:`StaticView`: the refine stage's
``physics``/``direct`` value where the candidate was refined, else the ``network``'s).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anisoscreen import tensor as tmath
from anisoscreen.query import CandidateRow
from anisoscreen.report.optics import principal_axes

__all__ = [
    "CandidateRecord",
    "MaterialCard",
    "ModeView",
    "StaticView",
    "TensorView",
    "material_card",
    "mp_url",
]

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


class ModeView(BaseModel):
    """One optical Gamma mode of a refined candidate, as shown."""

    frequency_cm1: float
    eps_contribution: float = Field(description="The mode's share of eps0_poly.")


class StaticView(BaseModel):
    """The static tensor eps_inf + eps0 of one candidate and where its eps0 comes from."""

    ionic_method: str = Field(description="physics, blend or direct (refine stage), or network.")
    total: TensorView
    eps_ionic_poly: float | None = None
    figure_of_merit: float | None = None
    network_eps_total_poly: float | None = Field(
        None, description="The network's static eps_poly (shown beside a refined value)."
    )
    network_figure_of_merit: float | None = None
    potential: str | None = Field(None, description="Refined: potential of the force constants.")
    born_source: str | None = Field(None, description="Refined: source of the Born charges.")
    flags: list[str] = Field(default_factory=list, description="Refined: why not physics.")
    strongest_modes: list[ModeView] = Field(
        default_factory=list, description="Refined: the modes with the largest eps0 share."
    )

    @classmethod
    def of(
        cls, row: CandidateRow, lattice_matrix: Any = None, n_modes: int = 3
    ) -> StaticView | None:
        """The view of ``row``'s static values (``None`` without an ionic value)."""
        total, method = row.total_tensor, row.ionic_method
        if total is None or method is None:
            return None
        fields: dict[str, Any] = {}
        refined = row.refined
        if refined is not None:
            network = row.prediction.eps_total
            modes = sorted(
                (m for m in refined.modes if m.included),
                key=lambda m: m.eps_contribution,
                reverse=True,
            )
            fields = {
                "network_eps_total_poly": None if network is None else network.eps_poly,
                "network_figure_of_merit": row.prediction.figure_of_merit,
                "potential": refined.potential,
                "born_source": refined.born_source,
                "flags": refined.flags,
                "strongest_modes": [
                    ModeView(frequency_cm1=m.frequency_cm1, eps_contribution=m.eps_contribution)
                    for m in modes[:n_modes]
                ],
            }
        return cls(
            ionic_method=method,
            total=TensorView.of(total.tensor, lattice_matrix),
            eps_ionic_poly=row.predicted_eps_ionic,
            figure_of_merit=row.figure_of_merit,
            **fields,
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
    birefringence_std: float | None = None
    space_group_symbol: str | None = None
    space_group_number: int | None = None
    lattice_parameters: dict[str, float] | None = None
    mp_url: str | None = Field(None, description="The Materials Project page (MP ids only).")
    static: StaticView | None = Field(
        None, description="The static tensor (with an ionic model), labelled by its eps0 method."
    )

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
        static=StaticView.of(row, lattice),
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
    ionic_method: str | None = Field(
        default=None,
        description="Where the static values' eps0 comes from: physics or direct (the ionic "
        "refine stage), network (the prediction's ionic model); None without an ionic model.",
    )
    predicted_eps_ionic: float | None = Field(default=None, description="eps0_poly of the method.")
    predicted_eps_total: float | None = Field(
        default=None, description="Static eps_poly (eps_inf + eps0) of the method."
    )
    predicted_ar_total: float | None = Field(default=None, description="a_r of that tensor.")
    figure_of_merit: float | None = Field(
        default=None, description="High-kappa FOM E_g x static eps_poly of the method."
    )

    @classmethod
    def of(cls, row: CandidateRow) -> CandidateRecord:
        """The record of one joined candidate row."""
        return cls(
            **row.summary(),
            anisotropy_ratio_std=row.prediction.anisotropy_ratio_std,
            eps_poly_std=row.prediction.eps_poly_std,
        )

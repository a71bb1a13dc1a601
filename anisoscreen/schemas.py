"""Pydantic documents stored by anisoscreen (emmet style; monty-serialisable for jobflow).

Field names follow the Materials Project API where a counterpart exists
(``material_id``, ``formula_pretty``, ``energy_above_hull``, ``band_gap``, ``nsites``,
``elements``). Tensors are plain 3x3 lists. Each document names the key its store upserts on
(:attr:`STORE_KEY`), so re-runs never duplicate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from enum import Enum
from typing import Any, ClassVar

import numpy as np
from monty.json import jsanitize
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pymatgen.core import Structure

from anisoscreen import tensor as tmath

__all__ = [
    "CandidateDoc",
    "Dimensionality",
    "ForceConstantsDoc",
    "GammaModeDoc",
    "IonicRefinement",
    "PredictionDoc",
    "RefinementDoc",
    "ScreeningRunDoc",
    "StructureDescriptorsDoc",
    "TensorPrediction",
    "ValidationDoc",
    "ValidationState",
    "lattice_parameters",
    "optics_fields",
    "structure_hash",
    "structure_id",
    "utcnow",
]

Matrix3 = list[list[float]]


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(timezone.utc)


def structure_id(structure: Structure, decimals: int = 3) -> str:
    """A stable identifier for a structure that has no Materials Project id.

    The hash covers the lattice and the sorted (species, wrapped fractional coordinates),
    so it does not depend on the order of sites or on float noise below ``10**-decimals``.
    """
    lattice = np.round(structure.lattice.matrix, decimals).tolist()
    sites = sorted(
        (site.species_string, *np.round(np.mod(site.frac_coords, 1.0), decimals).tolist())
        for site in structure
    )
    payload = json.dumps([lattice, sites], separators=(",", ":"))
    return "as-" + hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def structure_hash(structure: Structure, decimals: int = 3) -> str:
    """A stable hash of a structure's lattice, species and fractional coordinates.

    Lattice vectors (Å) and fractional coordinates wrapped into [0, 1) are rounded to
    ``decimals``; the sites are sorted, so the hash does not change with the order of the
    sites, with a site moved by a lattice vector, or with float noise well below
    ``10**-decimals``. It changes with the lattice, a species, or a site moved further than
    that; it is not invariant to a change of cell setting or origin (symmetrically
    equivalent descriptions of one crystal may hash differently, which only costs a
    recomputation).
    """
    scale = 10**decimals
    lattice = np.rint(np.asarray(structure.lattice.matrix) * scale).astype(np.int64)
    frac = np.rint(np.mod(structure.frac_coords, 1.0) * scale).astype(np.int64) % scale
    species = [site.species_string for site in structure]
    order = sorted(range(len(species)), key=lambda i: (species[i], *frac[i].tolist()))
    payload = json.dumps(
        [decimals, lattice.tolist(), [[species[i], *frac[i].tolist()] for i in order]],
        separators=(",", ":"),
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _check_matrix3(value: Any) -> Matrix3 | None:
    if value is None:
        return None
    array = tmath.as_array(value)
    if array.shape != (3, 3):
        raise ValueError(f"expected a 3x3 tensor, got shape {array.shape}")
    return array.tolist()


def lattice_parameters(structure: Structure) -> dict[str, float]:
    """Lattice parameters a, b, c (Å) and alpha, beta, gamma (degrees) of a structure."""
    lattice = structure.lattice
    values = (*lattice.abc, *lattice.angles)
    names = ("a", "b", "c", "alpha", "beta", "gamma")
    return {name: round(float(v), 5) for name, v in zip(names, values, strict=True)}


def optics_fields(tensor: Any, lattice_matrix: Any = None) -> dict[str, Any]:
    """The optical fields of a document from its eps_inf tensor (empty when not defined).

    ``refractive_indices`` (ascending), ``birefringence``, ``optical_character`` and, when
    biaxial, ``optic_axial_angle`` (2V_z, degrees); with ``lattice_matrix`` (rows: lattice
    vectors) also ``optic_axes`` as lattice directions ``[u, v, w]``.
    """
    try:
        optics = tmath.optical_properties(tensor)
    except (tmath.TensorValidationError, np.linalg.LinAlgError, ValueError):
        return {}
    fields: dict[str, Any] = {
        "refractive_indices": [round(float(v), 6) for v in optics.refractive_indices],
        "birefringence": round(optics.birefringence, 6),
        "optical_character": optics.character,
        "optic_axial_angle": optics.optic_axial_angle,
    }
    if lattice_matrix is not None:
        fields["optic_axes"] = [
            np.round(tmath.cartesian_to_crystal_direction(axis, lattice_matrix), 4).tolist()
            for axis in optics.optic_axes
        ]
    return fields


_OPTICS_NAMES = ("refractive_indices", "birefringence", "optical_character", "optic_axial_angle")


def structure_dict(structure: Structure) -> dict[str, Any]:
    """``structure.as_dict()`` made BSON-ready.

    Equal to ``jsanitize(structure.as_dict(), strict=True)`` but several times faster:

    - pymatgen already writes plain lists and floats, so only the free-form ``properties``
      need sanitising;
    - the sites are written here, without the lattice dict (with its lattice parameters)
      that each site's ``as_dict`` computes and the structure's then deletes.
    """
    lattice = structure.lattice.as_dict(verbosity=1)
    del lattice["@module"], lattice["@class"]
    species: dict[tuple, list[dict[str, Any]]] = {}  # by occupancy: the same for many sites
    sites = []
    # frac_coords and cart_coords stack each site's own arrays, so the values are the same
    for site, abc, xyz in zip(
        structure,
        structure.frac_coords.astype(float).tolist(),
        structure.cart_coords.astype(float).tolist(),
        strict=True,
    ):
        occupancy = tuple(site.species.items())
        if occupancy not in species:
            species[occupancy] = _species_entries(occupancy)
        properties = site.properties
        sites.append(
            {  # a site's as_dict(verbosity=1) less its lattice, keys in pymatgen's order
                "species": [dict(entry) for entry in species[occupancy]],
                "abc": abc,
                "properties": _sanitised(properties),
                "label": site.label,
                "xyz": xyz,
            }
        )
    return {
        "@module": type(structure).__module__,
        "@class": type(structure).__name__,
        "charge": structure.charge,
        "lattice": lattice,
        "properties": _sanitised(structure.properties),
        "sites": sites,
    }


def _species_entries(occupancy: tuple) -> list[dict[str, Any]]:
    """The ``species`` entries of a site's dict: each species' dict and its ``occu``."""
    entries = []
    for specie, amount in occupancy:
        entry = specie.as_dict()
        del entry["@module"], entry["@class"]
        entry["occu"] = amount
        entries.append({k: v.item() if isinstance(v, np.generic) else v for k, v in entry.items()})
    return entries


def _sanitised(properties: dict[str, Any]) -> dict[str, Any]:
    """Free-form ``properties`` made BSON-ready (empty ones as they are)."""
    return jsanitize(properties, strict=True, allow_bson=True) if properties else properties


class _Document(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), arbitrary_types_allowed=True)

    STORE_KEY: ClassVar[tuple[str, ...]] = ("material_id",)

    last_updated: datetime = Field(default_factory=utcnow, description="Time of the last write.")

    def store_dict(self) -> dict[str, Any]:
        """A BSON-ready dict (structures as pymatgen dicts, enums as values) for a maggma store."""
        structures = {
            name: value for name, value in self.__dict__.items() if isinstance(value, Structure)
        }
        data = jsanitize(
            self.model_dump(exclude=set(structures)),
            strict=True,
            enum_values=True,
            allow_bson=True,
        )
        data.update({name: structure_dict(value) for name, value in structures.items()})
        return data

    @classmethod
    def from_store(cls, doc: dict[str, Any]):
        """Rebuild a document from a store record (ignores Mongo's ``_id``)."""
        return cls.model_validate({k: v for k, v in doc.items() if k != "_id"})


class CandidateDoc(_Document):
    """A structure considered by the screening."""

    STORE_KEY: ClassVar[tuple[str, ...]] = ("material_id",)

    material_id: str = Field(description="MP id, or a structure hash for local structures.")
    formula_pretty: str = Field(description="Reduced formula.")
    structure: Structure
    source: str = Field(description="Where the candidate came from (mp, bundled, a path).")
    energy_above_hull: float | None = Field(None, description="eV/atom.")
    band_gap: float | None = Field(None, description="Band gap in eV.")
    nsites: int
    elements: list[str]
    is_stable: bool | None = None
    lattice_parameters: dict[str, float] | None = Field(
        None, description="a, b, c (Å), alpha, beta, gamma (degrees); derived on read."
    )
    structure_hash: str | None = Field(
        None, description="structure_hash of the structure (keys the descriptor cache)."
    )

    @model_validator(mode="after")
    def _derive_lattice(self) -> CandidateDoc:
        if self.lattice_parameters is None:
            self.lattice_parameters = lattice_parameters(self.structure)
        if self.structure_hash is None:
            self.structure_hash = structure_hash(self.structure)
        return self

    @classmethod
    def from_structure(
        cls, structure: Structure, source: str, material_id: str | None = None, **fields: Any
    ) -> CandidateDoc:
        """Build a candidate from a structure, deriving formula, sites and elements."""
        return cls(
            material_id=material_id or structure_id(structure),
            formula_pretty=structure.composition.reduced_formula,
            structure=structure,
            source=source,
            nsites=len(structure),
            elements=sorted({el.symbol for el in structure.composition.elements}),
            **fields,
        )


class Dimensionality(int, Enum):
    """Structural dimensionality of the bonded network (Larsen et al.)."""

    ZERO_D = 0
    ONE_D = 1
    TWO_D = 2
    THREE_D = 3


class TensorPrediction(BaseModel):
    """One predicted dielectric tensor (ionic or static) with its descriptors and spread."""

    model_config = ConfigDict(protected_namespaces=())

    tensor: Matrix3 = Field(description="Ensemble-mean tensor, 3x3.")
    eigenvalues: list[float] = Field(description="Ascending eigenvalues.")
    eps_poly: float = Field(description="Polycrystalline average (mean eigenvalue).")
    anisotropy_ratio: float | None = Field(
        None, description="lambda_max / lambda_min; None when lambda_min <= 0."
    )
    tensor_std: Matrix3 | None = Field(None, description="Ensemble spread, 3x3.")
    eps_poly_std: float | None = None
    anisotropy_ratio_std: float | None = None

    _check_tensor = field_validator("tensor", "tensor_std", mode="before")(_check_matrix3)

    @classmethod
    def from_members(cls, mean: Any, members: np.ndarray | None = None) -> TensorPrediction:
        """Descriptors of ``mean`` and, from member tensors (m, 3, 3) when m > 1, the spread."""
        summary = tmath.summarize(mean)
        ratio = summary.anisotropy_ratio
        fields: dict[str, Any] = {}
        if members is not None and len(members) > 1:
            eig = tmath.eigenvalues(members)
            fields = {
                "tensor_std": members.std(axis=0, ddof=1).tolist(),
                "eps_poly_std": float(eig.mean(axis=1).std(ddof=1)),
            }
            if np.all(eig[:, 0] > 0):
                fields["anisotropy_ratio_std"] = float((eig[:, -1] / eig[:, 0]).std(ddof=1))
        return cls(
            tensor=summary.tensor.tolist(),
            eigenvalues=summary.eigenvalues.tolist(),
            eps_poly=summary.eps_poly,
            anisotropy_ratio=None if not np.isfinite(ratio) else ratio,
            **fields,
        )


class PredictionDoc(_Document):
    """A model's prediction of the high-frequency dielectric tensor of one material.

    The flat fields (``dielectric_tensor``, ``eps_poly``, ``anisotropy_ratio``...) are the
    electronic eps_inf, as always. When the model set includes an ionic model, ``eps_ionic``
    and ``eps_total`` (= eps_inf + eps_ionic exactly) hold the ionic and static tensors, and
    ``figure_of_merit`` is ``band_gap * eps_total.eps_poly`` (Yim et al.'s leakage proxy).
    """

    STORE_KEY: ClassVar[tuple[str, ...]] = ("material_id", "model")

    material_id: str
    formula_pretty: str
    model: str = Field(description="Model name.")
    model_version: str
    model_checksum: str = Field(description="SHA-256 of the checkpoint file.")
    dielectric_tensor: Matrix3 = Field(description="Predicted eps_inf, 3x3.")
    eigenvalues: list[float] = Field(description="Ascending eigenvalues.")
    eps_poly: float = Field(description="Polycrystalline eps_inf (mean eigenvalue).")
    anisotropy_ratio: float = Field(description="a_r = lambda_max / lambda_min.")
    dielectric_tensor_std: Matrix3 | None = Field(None, description="Ensemble spread, 3x3.")
    eps_poly_std: float | None = None
    anisotropy_ratio_std: float | None = None
    n_models: int = Field(1, description="Ensemble size.")
    dimensionality: Dimensionality | None = None
    crystal_system: str | None = None
    description: str | None = Field(None, description="robocrys text (top candidates only).")
    elements: list[str] = Field(default_factory=list)
    nsites: int | None = None
    energy_above_hull: float | None = None
    band_gap: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    eps_ionic: TensorPrediction | None = Field(None, description="Predicted ionic eps0.")
    eps_total: TensorPrediction | None = Field(
        None, description="Predicted static tensor, eps_inf + eps_ionic."
    )
    ionic_model: str | None = Field(None, description="Name of the ionic model of the set.")
    ionic_model_version: str | None = None
    ionic_model_checksum: str | None = Field(None, description="SHA-256 of the ionic model.")
    figure_of_merit: float | None = Field(
        None, description="band_gap (eV) x eps_total.eps_poly, the high-kappa FOM."
    )
    band_gap_used: bool | None = Field(
        None,
        description="For models that take the band gap: whether this prediction had it "
        "(False: the gap-free fallback, the input carried no gap); None for other models.",
    )
    refractive_indices: list[float] | None = Field(
        None, description="Principal n = sqrt(eigenvalue of eps_inf), ascending; derived on read."
    )
    birefringence: float | None = Field(None, description="dn = n_max - n_min; derived on read.")
    birefringence_std: float | None = Field(None, description="Ensemble spread of dn.")
    optical_character: str | None = Field(
        None, description="isotropic, uniaxial/biaxial positive/negative; derived on read."
    )
    optic_axial_angle: float | None = Field(None, description="2V_z in degrees (biaxial only).")
    optic_axes: list[list[float]] | None = Field(
        None, description="Optic axes as lattice directions [u, v, w]."
    )
    space_group_symbol: str | None = Field(None, description="Hermann-Mauguin symbol.")
    space_group_number: int | None = Field(None, description="International number, 1-230.")
    lattice_parameters: dict[str, float] | None = Field(
        None, description="a, b, c (Å), alpha, beta, gamma (degrees)."
    )

    _check_tensor = field_validator("dielectric_tensor", "dielectric_tensor_std", mode="before")(
        _check_matrix3
    )

    @model_validator(mode="after")
    def _derive_optics(self) -> PredictionDoc:
        # documents stored before the optical fields existed get them on read (one eigh)
        if self.birefringence is None:
            for name, value in optics_fields(self.dielectric_tensor).items():
                setattr(self, name, value)
        return self

    @property
    def eps_electronic(self) -> TensorPrediction:
        """The electronic prediction in the same shape as ``eps_ionic`` / ``eps_total``."""
        return TensorPrediction(
            tensor=self.dielectric_tensor,
            eigenvalues=self.eigenvalues,
            eps_poly=self.eps_poly,
            anisotropy_ratio=self.anisotropy_ratio,
            tensor_std=self.dielectric_tensor_std,
            eps_poly_std=self.eps_poly_std,
            anisotropy_ratio_std=self.anisotropy_ratio_std,
        )

    @classmethod
    def from_tensor(
        cls,
        tensor: Any,
        *,
        material_id: str,
        formula_pretty: str,
        model: str,
        model_version: str,
        model_checksum: str,
        **fields: Any,
    ) -> PredictionDoc:
        """Build a prediction, deriving eigenvalues, eps_poly and a_r from ``tensor``."""
        summary = tmath.summarize(tensor)
        return cls(
            material_id=material_id,
            formula_pretty=formula_pretty,
            model=model,
            model_version=model_version,
            model_checksum=model_checksum,
            dielectric_tensor=summary.tensor.tolist(),
            eigenvalues=summary.eigenvalues.tolist(),
            eps_poly=summary.eps_poly,
            anisotropy_ratio=summary.anisotropy_ratio,
            **fields,
        )


class GammaModeDoc(BaseModel):
    """One optical Gamma mode of a refined candidate."""

    frequency_thz: float = Field(description="Frequency in THz; negative when imaginary.")
    frequency_cm1: float = Field(description="Frequency in cm^-1; negative when imaginary.")
    mode_charge: list[float] | None = Field(
        None, description="Mode effective charge vector p_m, e/sqrt(amu)."
    )
    oscillator_strength: Matrix3 | None = Field(None, description="S_m = p_m p_m^T in e^2/amu.")
    eps_contribution: float = Field(
        0.0, description="The mode's share of eps0_poly (0 when left out)."
    )
    included: bool = Field(description="Whether the mode entered eps0.")


class IonicRefinement(BaseModel):
    """One candidate after the ionic refine stage (:mod:`anisoscreen.screening.ionic_refine`)."""

    material_id: str
    formula: str
    rank: int = Field(description="Row of the ranking (0: best).")
    ionic_method: str = Field(
        description="Which eps0 the totals use: physics, blend (of physics and direct) or direct."
    )
    potential: str = Field(description="Potential of the force constants.")
    born_source: str | None = Field(None, description="Where the Born charges came from.")
    eps_ionic: Matrix3 | None = Field(None, description="eps0 of ionic_method.")
    eps_total: Matrix3 | None = Field(None, description="eps_inf + eps0 of ionic_method.")
    eps_total_poly: float | None = None
    figure_of_merit: float | None = Field(None, description="band_gap x eps_total_poly.")
    physics_eps_ionic: Matrix3 | None = Field(None, description="eps0 by the formula.")
    physics_spread: float | None = Field(
        None,
        description="RMS over the six unique components of the physics eps0's spread over "
        "the Born model's members (predicted charges).",
    )
    physics_share: float | None = Field(
        None, description="The physics value's share in a spread-weighted blend."
    )
    direct_eps_ionic: Matrix3 | None = Field(None, description="eps0 of the direct model.")
    direct_figure_of_merit: float | None = None
    modes: list[GammaModeDoc] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list, description="Why physics was not used.")
    max_residual_force: float | None = Field(None, description="eV/A, under the potential.")
    seconds: float = Field(0.0, description="Wall time of this candidate.")
    error: str | None = Field(None, description="Why the route could not run at all.")


class RefinementDoc(_Document, IonicRefinement):
    """A refined row as stored: the refinement of one prediction (material and model set).

    The refine stage writes one per refined candidate, keyed like the prediction it refines
    and carrying that prediction's checksums, so :func:`anisoscreen.query.join_refinement`
    joins it to exactly that prediction (a re-prediction by another model set leaves it out).
    """

    STORE_KEY: ClassVar[tuple[str, ...]] = ("material_id", "model")

    model: str = Field(description="Model name of the refined prediction.")
    model_checksum: str = Field(description="SHA-256 of the refined prediction's model.")
    ionic_model_checksum: str | None = Field(
        None, description="SHA-256 of the refined prediction's ionic model."
    )

    @classmethod
    def of(cls, refinement: IonicRefinement, prediction: PredictionDoc) -> RefinementDoc:
        """The stored form of ``refinement``, made from ``prediction``."""
        return cls(
            **refinement.model_dump(),
            model=prediction.model,
            model_checksum=prediction.model_checksum,
            ionic_model_checksum=prediction.ionic_model_checksum,
        )

    def refines(self, prediction: PredictionDoc) -> bool:
        """Whether this is the refinement of ``prediction`` (same material and model set)."""
        return (
            self.material_id,
            self.model,
            self.model_checksum,
            self.ionic_model_checksum,
        ) == (
            prediction.material_id,
            prediction.model,
            prediction.model_checksum,
            prediction.ionic_model_checksum,
        )

    @property
    def total(self) -> TensorPrediction | None:
        """The static tensor of ``ionic_method`` with its descriptors (``None`` when absent)."""
        return None if self.eps_total is None else TensorPrediction.from_members(self.eps_total)

    @property
    def ionic(self) -> TensorPrediction | None:
        """eps0 of ``ionic_method`` with its descriptors (``None`` when absent)."""
        return None if self.eps_ionic is None else TensorPrediction.from_members(self.eps_ionic)


class ValidationState(str, Enum):
    """Life cycle of a DFT validation of one candidate."""

    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FLAGGED = "flagged"
    FAILED = "failed"


class ValidationDoc(_Document):
    """DFT (DFPT / optics) validation of one candidate."""

    STORE_KEY: ClassVar[tuple[str, ...]] = ("material_id", "job_uuid")

    material_id: str
    formula_pretty: str
    job_uuid: str = Field(description="jobflow uuid of the VASP job.")
    flow_uuid: str | None = None
    calc_type: str = Field("dfpt", description="'dfpt' (LEPSILON) or 'optics' (LOPTICS).")
    state: ValidationState = ValidationState.SUBMITTED
    flags: list[str] = Field(default_factory=list, description="Why the result is not valid.")
    epsilon_electronic: Matrix3 | None = Field(None, description="DFPT eps_inf, 3x3.")
    epsilon_ionic: Matrix3 | None = Field(None, description="DFPT ionic contribution, 3x3.")
    eigenvalues: list[float] | None = None
    eps_poly: float | None = None
    anisotropy_ratio: float | None = Field(None, description="DFT a_r.")
    optics: dict[str, Any] | None = Field(
        None,
        description="LOPTICS dielectric function (layout read by anisoscreen.report.optics) "
        "and its principal-axis spectra and absorption.",
    )
    prediction_model: str | None = None
    predicted_anisotropy_ratio: float | None = None
    input_settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Requested input-set settings and the INCAR/KPOINTS/POTCAR actually run.",
    )
    worker: str | None = None
    project: str | None = None
    error: str | None = None
    epsilon_total: Matrix3 | None = Field(
        None, description="Static dielectric tensor eps_inf + eps_ionic (DFPT only), 3x3."
    )
    principal_axes: Matrix3 | None = Field(
        None, description="Rows are the unit principal axes of eps_inf (ascending eigenvalues)."
    )
    converged: bool | None = Field(None, description="Whether VASP reported convergence.")
    vasp_calc_type: str | None = Field(None, description="emmet calc type, e.g. 'GGA DFPT'.")
    dir_name: str | None = Field(None, description="Directory of the VASP run.")
    predicted_dielectric_tensor: Matrix3 | None = Field(
        None, description="The prediction being validated, 3x3."
    )
    imported_from: str | None = Field(
        None,
        description="Where an imported result comes from (None: run by anisoscreen), e.g. "
        "'Materials Project DFPT (shared data set)'.",
    )
    source_task_id: str | None = Field(
        None, description="The calculation's id in its source (MP id, run folder)."
    )
    in_training_split: list[str] = Field(
        default_factory=list,
        description="Models whose training split holds this material; accuracy figures "
        "leave such records out by default.",
    )
    refractive_indices: list[float] | None = Field(
        None, description="DFT principal n = sqrt(eigenvalue of eps_inf), ascending."
    )
    birefringence: float | None = Field(None, description="DFT dn = n_max - n_min.")
    optical_character: str | None = Field(None, description="DFT optical character.")
    optic_axial_angle: float | None = Field(None, description="DFT 2V_z in degrees (biaxial).")

    @model_validator(mode="after")
    def _derive_optics(self) -> ValidationDoc:
        if self.birefringence is None and self.epsilon_electronic is not None:
            for name, value in optics_fields(self.epsilon_electronic).items():
                if name in _OPTICS_NAMES:
                    setattr(self, name, value)
        return self

    _check_tensor = field_validator(
        "epsilon_electronic",
        "epsilon_ionic",
        "epsilon_total",
        "predicted_dielectric_tensor",
        mode="before",
    )(_check_matrix3)

    @property
    def is_valid(self) -> bool:
        """A completed, unflagged result (the only kind compared with predictions)."""
        return self.state == ValidationState.COMPLETED and not self.flags

    @property
    def anisotropy_ratio_error(self) -> float | None:
        """Relative error of the predicted a_r against the DFT a_r, when both exist."""
        if self.anisotropy_ratio is None or self.predicted_anisotropy_ratio is None:
            return None
        return (self.predicted_anisotropy_ratio - self.anisotropy_ratio) / self.anisotropy_ratio

    @classmethod
    def from_job_output(cls, output: Any) -> ValidationDoc:
        """The ``ValidationDoc`` a validation record job returned (object or serialised dict).

        Raises
        ------
        TypeError
            When the output is neither.
        """
        if isinstance(output, ValidationDoc):
            return output
        if isinstance(output, dict):
            return cls.from_store({k: v for k, v in output.items() if not k.startswith("@")})
        raise TypeError(f"{type(output).__name__}, not a ValidationDoc")


class ScreeningRunDoc(_Document):
    """Provenance and bookkeeping of one screening campaign."""

    STORE_KEY: ClassVar[tuple[str, ...]] = ("run_id",)

    run_id: str
    source: str
    criteria: dict[str, Any] = Field(default_factory=dict)
    n_input: int = 0
    removed_by: dict[str, int] = Field(
        default_factory=dict, description="Candidates removed by each criterion, in order."
    )
    n_candidates: int = 0
    n_predicted: int = 0
    n_reused: int = Field(0, description="Predictions already in the store (not recomputed).")
    n_failed: int = 0
    failures: list[dict[str, str]] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    model: str | None = None
    model_version: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class StructureDescriptorsDoc(_Document):
    """The ranking descriptors of one structure, keyed by its :func:`structure_hash`.

    Structural, so shared by every material id, model and run with the same structure: a
    repeated screen, or a new model on the same structures, computes none of them again.
    ``version`` is that of the descriptor computation; a new version recomputes.
    """

    STORE_KEY: ClassVar[tuple[str, ...]] = ("structure_hash",)

    structure_hash: str
    version: int
    dimensionality: Dimensionality | None = None
    crystal_system: str | None = None
    space_group_symbol: str | None = None
    space_group_number: int | None = None


class ForceConstantsDoc(_Document):
    """The Gamma force constants of one structure under one potential, cached.

    Keyed by :func:`structure_hash` and the potential's name, so a refine stage or an
    evaluation that meets the structure again (another material id, model, Born source or
    run) computes none of them again. The hash does not depend on the order of the sites, the
    force constants do: ``species`` and ``frac_coords`` give the order of their rows, and a
    structure with its sites in another order gets them permuted to its own. ``version`` is
    that of the force-constant computation
    (:data:`anisoscreen.ionic_physics.force_constant_cache.FORCE_CONSTANTS_VERSION`); another
    version recomputes.
    """

    STORE_KEY: ClassVar[tuple[str, ...]] = ("structure_hash", "potential")

    structure_hash: str
    potential: str = Field(description="Name of the potential (e.g. sevennet-l3i5).")
    version: int
    phi: list[list[float]] = Field(description="(3N, 3N) force constants, eV/A^2.")
    residual_forces: list[list[float]] = Field(description="(N, 3) forces of the cell, eV/A.")
    species: list[str] | None = Field(
        None, description="The sites' species, in the order of phi's rows (None: unknown)."
    )
    frac_coords: list[list[float]] | None = Field(
        None, description="The sites' fractional coordinates, in the order of phi's rows."
    )
    raw_asymmetry: float
    n_displacements: int
    n_operations: int
    seconds: float = Field(description="Wall time of the computation that made them.")


class CampaignPick(BaseModel):
    """One candidate picked in a campaign round, and what became of it.

    ``state`` goes ``selected`` -> ``prepared`` (its flow built and recorded, not yet
    submitted) -> ``submitted`` -> ``completed`` / ``failed``.
    """

    material_id: str
    formula_pretty: str = ""
    predicted: float = Field(description="Ensemble-mean objective when picked.")
    spread: float | None = Field(None, description="Ensemble standard deviation when picked.")
    score: float | None = Field(None, description="Acquisition score, where it has one.")
    state: str = "selected"
    flow_uuid: str | None = None
    job_uuids: list[str] = Field(default_factory=list, description="Record-job VASP uuids.")
    observed: float | None = Field(None, description="DFT objective once collected.")
    observed_tensor: Matrix3 | None = Field(
        None, description="DFT eps_inf (3x3) once collected: the label carried to siblings."
    )
    error: str | None = None


class CampaignRound(BaseModel):
    """One round: the model that ranked, the picks, the model trained on the results.

    ``stage`` goes ``selected`` -> ``submitted`` -> ``collected`` -> ``trained`` -> ``done``.
    """

    index: int
    model: str = Field(description="Stored name of the model whose predictions chose the picks.")
    stage: str = "selected"
    picks: list[CampaignPick] = Field(default_factory=list)
    new_model: str | None = Field(None, description="The version fine-tuned on this round.")
    sigma_scale: float | None = Field(
        None,
        description="GP learner: the factor on the GP's sigma from the labels' leave-one-out "
        "z-scores when the picks were made (None: no labels yet, or the finetune learner).",
    )
    spread_calibrated: bool | None = Field(
        None,
        description="Whether the picks' spread carries the model's calibration for this "
        "objective (False: uncalibrated ensemble spread; None: recorded before this was kept).",
    )
    carried: list[str] = Field(
        default_factory=list,
        description="carry_siblings: candidates whose objective the laminate law gave from a "
        "sibling's label when the picks were made (no DFT is spent on them).",
    )
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class CampaignDoc(_Document):
    """A closed-loop discovery campaign: its settings, rounds and current model."""

    STORE_KEY: ClassVar[tuple[str, ...]] = ("name",)

    name: str
    source: str | None = Field(None, description="Candidate source of the pool (None: all).")
    objective: str = "ar"
    strategy: str = "ucb"
    kappa: float = 1.5
    batch_size: int = 20
    budget: int = Field(100, description="Most DFT validations over the whole campaign.")
    group_by: str = "prototype"
    max_per_group: int = 3
    seed: int = 0
    base_model: str
    current_model: str
    ionic_model: str | None = Field(
        None, description="Ionic model of the set (fixed; needed by the static-tensor objectives)."
    )
    local: bool = False
    project: str | None = None
    worker: str | None = None
    finetune: dict[str, Any] = Field(default_factory=dict, description="FinetuneConfig fields.")
    learner: str = Field(
        "finetune",
        description="finetune: the ensemble is fine-tuned on the labels after each round; gp: "
        "the networks stay frozen and a residual GP on their embeddings is refit on the labels.",
    )
    diversity: str = Field(
        "group",
        description="group: the max_per_group guard; embedding: also a minimum distance "
        "between a batch's picks in the embedding space.",
    )
    gp_geometry: bool = Field(
        False, description="Add the vacuum geometry to the GP's and the diversity's coordinates."
    )
    carry_siblings: bool = Field(
        False,
        description="gp learner: carry each DFT label by the laminate law to the other "
        "paddings of the same layer stack in the pool, and spend no DFT on them.",
    )
    rounds: list[CampaignRound] = Field(default_factory=list)
    revision: int = Field(0, description="Saves so far; every save checks it (compare-and-set).")
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def n_picked(self) -> int:
        """Validations spent so far (every pick, whatever its outcome)."""
        return sum(len(r.picks) for r in self.rounds)

    @property
    def picked_ids(self) -> set[str]:
        """Material ids picked in any round."""
        return {p.material_id for r in self.rounds for p in r.picks}

"""Turn atomate2 ``TaskDoc``s into :class:`~anisoscreen.schemas.ValidationDoc`s.

The numbers come from ``TaskDoc.calcs_reversed[0].output``:

``epsilon_static``
    DFPT electronic (clamped-ion, high-frequency) tensor ε∞ — what the model predicts.
``epsilon_ionic``
    DFPT ionic contribution; ε₀ = ε∞ + ε_ion is kept as ``epsilon_total``.
``frequency_dependent_dielectric``
    LOPTICS ε(ω) (6 Voigt components per energy); its ω → 0 real part is the
    independent-particle ε∞, and ε(ω) projected on the principal axes gives the optical
    spectra and absorption coefficients stored in ``ValidationDoc.optics``.

A result that cannot be trusted is *flagged* (``state = FLAGGED``, reasons in ``flags``)
rather than stored as valid: VASP not converged, a tensor missing, not symmetric, not finite,
or with an eigenvalue below 1. All tensor checks use :mod:`anisoscreen.tensor`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.schemas import ValidationDoc, ValidationState

__all__ = [
    "INCAR_KEYS",
    "optics_from_dielectric",
    "validation_doc_from_task",
]

INCAR_KEYS = (
    "ENCUT",
    "EDIFF",
    "GGA",
    "METAGGA",
    "PREC",
    "ISMEAR",
    "SIGMA",
    "IBRION",
    "LEPSILON",
    "LPEAD",
    "LOPTICS",
    "NEDOS",
    "NBANDS",
    "CSHIFT",
    "ISPIN",
    "LDAU",
    "LASPH",
    "LUSE_VDW",
)
"""INCAR tags copied into ``ValidationDoc.input_settings['incar']``."""


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or key access, for TaskDoc objects and their serialised dicts alike."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _state_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def optics_from_dielectric(fdd: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The ω → 0 tensor and the optics record of a LOPTICS dielectric function.

    Parameters
    ----------
    fdd
        emmet ``FrequencyDependentDielectric`` (or its dict): ``energy``, ``real``,
        ``imaginary``.

    Returns
    -------
    tuple
        ``(eps_zero, optics)``: the real 3x3 tensor at the lowest energy, and the
        ``ValidationDoc.optics`` dict. Its layout is the one :mod:`anisoscreen.report.optics`
        reads: ``energies`` (eV) and ``eps_real`` / ``eps_imag`` as VASP's six components
        (xx yy zz xy yz zx) per energy; plus ``principal_axes`` (rows, ascending ε₁(0)) and,
        along them, ``principal_eps_real``, ``principal_eps_imag`` and ``absorption``
        (cm⁻¹), each ``[axis][energy]``.
    """
    energy = tmath.as_array(_get(fdd, "energy"))
    raw_real, raw_imag = _get(fdd, "real"), _get(fdd, "imaginary")
    real, imag = tmath.voigt6_to_tensors(raw_real), tmath.voigt6_to_tensors(raw_imag)
    if not (len(energy) == len(real) == len(imag)) or len(energy) == 0:
        raise ValueError("energy, real and imaginary parts differ in length or are empty")
    order = np.argsort(energy, kind="stable")
    energy, real, imag = energy[order], real[order], imag[order]
    eps_zero = real[0]
    _, vectors = np.linalg.eigh(tmath.symmetrize(eps_zero))
    axes = vectors.T  # rows, ascending eigenvalue
    eps1 = np.einsum("ai,nij,aj->an", axes, real, axes)
    eps2 = np.einsum("ai,nij,aj->an", axes, imag, axes)
    alpha = tmath.absorption_coefficient(energy[None, :], eps1, eps2)
    optics = {
        "energies": energy.tolist(),
        "eps_real": tmath.as_array(raw_real)[order].tolist(),
        "eps_imag": tmath.as_array(raw_imag)[order].tolist(),
        "principal_axes": axes.tolist(),
        "principal_eps_real": eps1.tolist(),
        "principal_eps_imag": eps2.tolist(),
        "absorption": alpha.tolist(),
        "units": {"energies": "eV", "absorption": "cm^-1"},
    }
    return eps_zero, optics


def _input_settings(calc: Any, requested: dict[str, Any] | None) -> dict[str, Any]:
    inp = _get(calc, "input")
    incar = _get(inp, "incar") or {}
    kpoints = _get(inp, "kpoints")
    if hasattr(kpoints, "as_dict"):
        kpoints = kpoints.as_dict()
    settings: dict[str, Any] = {"requested": dict(requested or {})}
    settings["incar"] = {k: incar[k] for k in INCAR_KEYS if k in incar}
    if isinstance(kpoints, dict):
        settings["kpoints"] = {
            "style": str(kpoints.get("generation_style", kpoints.get("style"))),
            "kpts": kpoints.get("kpoints", kpoints.get("kpts")),
        }
    settings["nkpoints"] = _get(inp, "nkpoints")
    settings["potcar"] = _get(inp, "potcar")
    return settings


def _check(label: str, value: Any, flags: list[str], **kwargs: Any) -> np.ndarray | None:
    """Validated (symmetrised) tensor, or ``None`` with a flag saying why."""
    if value is None:
        flags.append(f"{label} missing from the VASP output")
        return None
    try:
        return tmath.validate_dielectric_tensor(value, **kwargs)
    except tmath.TensorValidationError as exc:
        flags.append(f"{label}: {exc}")
        return None


def validation_doc_from_task(
    task_doc: Any,
    *,
    material_id: str,
    job_uuid: str,
    calc_type: str = "dfpt",
    formula_pretty: str | None = None,
    flow_uuid: str | None = None,
    input_settings: dict[str, Any] | None = None,
    prediction_model: str | None = None,
    predicted_anisotropy_ratio: float | None = None,
    predicted_dielectric_tensor: Any = None,
    symmetry_tol: float = tmath.DEFAULT_SYMMETRY_TOL,
    min_eigenvalue: float = 1.0,
    **fields: Any,
) -> ValidationDoc:
    """Build the validation record of one VASP run, flagging anything untrustworthy.

    Parameters
    ----------
    task_doc
        atomate2/emmet ``TaskDoc`` (or its serialised dict) of the DFPT or LOPTICS job.
    material_id, job_uuid
        The candidate and the jobflow uuid of the VASP job (the store key).
    calc_type
        ``"dfpt"`` (reads ``epsilon_static`` / ``epsilon_ionic``) or ``"optics"`` (reads
        ``frequency_dependent_dielectric``).
    formula_pretty
        Reduced formula; taken from the TaskDoc when omitted.
    flow_uuid
        uuid of the validation flow.
    input_settings
        The requested input-set settings (kept under ``input_settings['requested']``).
    prediction_model, predicted_anisotropy_ratio, predicted_dielectric_tensor
        The prediction being validated, if any.
    symmetry_tol, min_eigenvalue
        Passed to :func:`anisoscreen.tensor.validate_dielectric_tensor`.
    **fields
        Other ``ValidationDoc`` fields (``worker``, ``project``...).

    Returns
    -------
    ValidationDoc
        ``state = COMPLETED`` with no flags, or ``FLAGGED`` with the reasons.
    """
    if calc_type not in ("dfpt", "optics"):
        raise ValueError(f"calc_type must be 'dfpt' or 'optics', not {calc_type!r}")
    flags: list[str] = []
    calcs = _get(task_doc, "calcs_reversed") or []
    calc = calcs[0] if calcs else None
    output = _get(calc, "output")
    if output is None:
        flags.append("TaskDoc has no calcs_reversed[0].output")

    task_state = _state_value(_get(task_doc, "state"))
    run_state = _state_value(_get(calc, "has_vasp_completed"))
    converged = task_state == "successful" and run_state in (None, "successful")
    if not converged:
        flags.append(f"VASP run not converged (task state {task_state}, run state {run_state})")

    check = {"symmetry_tol": symmetry_tol, "min_eigenvalue": min_eigenvalue}
    electronic = ionic = total = None
    optics = None
    if output is not None and calc_type == "dfpt":
        electronic = _check("epsilon_static", _get(output, "epsilon_static"), flags, **check)
        raw_ionic = _get(output, "epsilon_ionic")
        if raw_ionic is not None:
            ionic = _check(
                "epsilon_ionic", raw_ionic, flags, symmetry_tol=symmetry_tol, min_eigenvalue=None
            )
        if electronic is not None and ionic is not None:
            total = electronic + ionic
    elif output is not None:
        fdd = _get(output, "frequency_dependent_dielectric")
        if fdd is None or _get(fdd, "energy") is None:
            flags.append("frequency_dependent_dielectric missing from the VASP output")
        else:
            try:
                eps_zero, optics = optics_from_dielectric(fdd)
            except ValueError as exc:
                flags.append(f"frequency_dependent_dielectric: {exc}")
            else:
                electronic = _check("epsilon(omega=0)", eps_zero, flags, **check)

    summary = tmath.summarize(electronic) if electronic is not None else None
    if summary is not None and optics is None:
        axes = np.linalg.eigh(summary.tensor)[1].T.tolist()
    elif optics is not None:
        axes = optics["principal_axes"]
    else:
        axes = None

    if formula_pretty is None:
        formula_pretty = _get(task_doc, "formula_pretty") or ""
    calc_type_value = _get(task_doc, "calc_type")
    return ValidationDoc(
        material_id=material_id,
        formula_pretty=formula_pretty,
        job_uuid=job_uuid,
        flow_uuid=flow_uuid,
        calc_type=calc_type,
        state=ValidationState.FLAGGED if flags else ValidationState.COMPLETED,
        flags=flags,
        epsilon_electronic=None if electronic is None else electronic.tolist(),
        epsilon_ionic=None if ionic is None else ionic.tolist(),
        epsilon_total=None if total is None else total.tolist(),
        eigenvalues=None if summary is None else summary.eigenvalues.tolist(),
        eps_poly=None if summary is None else summary.eps_poly,
        anisotropy_ratio=None if summary is None else summary.anisotropy_ratio,
        principal_axes=axes,
        optics=optics,
        converged=converged,
        vasp_calc_type=None if calc_type_value is None else _state_value(calc_type_value),
        dir_name=_get(task_doc, "dir_name"),
        prediction_model=prediction_model,
        predicted_anisotropy_ratio=predicted_anisotropy_ratio,
        predicted_dielectric_tensor=predicted_dielectric_tensor,
        input_settings=_input_settings(calc, input_settings),
        **fields,
    )

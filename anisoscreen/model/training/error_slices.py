"""Where a model errs, and how well its ensemble spread tracks the error.

Errors by dimensionality, on vacuum-separated layers and on the high-eps tail; calibration.

The overall test MAE hides the crystals an anisotropy screen exists to find: layered crystals
whose layers sit far apart, and the strongly polarisable tail. These slices make them visible;
``anisoscreen evaluate`` prints them and the model card records them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymatgen.core import Structure
from scipy.stats import spearmanr

from anisoscreen import tensor as tmath
from anisoscreen.geometry import largest_empty_slab
from anisoscreen.model.spread_calibration import RATIO_FLOOR, SpreadCalibration, spread_quantities

__all__ = [
    "GAP_BINS",
    "LAYER_GAP",
    "TAIL_EPS_POLY",
    "by_band_gap",
    "calibration",
    "error_block",
    "error_slices",
    "has_anisotropy_ratio",
]

LAYER_GAP = 6.0
"""Empty-slab width (angstrom) above which a structure counts as vacuum-separated layers."""

TAIL_EPS_POLY = 8.0
"""Reference eps_poly above which a structure belongs to the high-eps tail."""


GAP_BINS: tuple[tuple[str, float, float], ...] = (
    ("gap < 0.5 eV", -np.inf, 0.5),
    ("gap 0.5-1 eV", 0.5, 1.0),
    ("gap 1-2 eV", 1.0, 2.0),
    ("gap > 2 eV", 2.0, np.inf),
)
"""PBE band-gap bins (label, lower, upper) of the error by gap."""


def _ratio(eigenvalues: np.ndarray) -> np.ndarray:
    return tmath.eigenvalue_ratio(eigenvalues, floor=RATIO_FLOOR)


def has_anisotropy_ratio(target: str) -> bool:
    """Whether a target's tensors have an anisotropy ratio (not eps0 alone: see error_block)."""
    return target != "ionic"


def tensor_errors(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each tensor's mean absolute error over its 6 unique components, for (n, 3, 3) tensors."""
    difference = np.abs(tmath.symmetrize(predicted) - tmath.symmetrize(reference))
    upper = np.triu_indices(3)
    return difference[:, upper[0], upper[1]].mean(axis=1)


def tensor_mae(predicted: np.ndarray, reference: np.ndarray) -> float:
    """DTNet's MAE_ten: mean absolute error over the 6 unique components of (n, 3, 3) tensors."""
    return float(tensor_errors(predicted, reference).mean())


def error_block(
    predicted: np.ndarray, reference: np.ndarray, anisotropy: bool = True
) -> dict[str, float | None]:
    """MAEs of eps_poly, a_r and the tensor, for tensors of shape (n, 3, 3).

    ``component_mae`` averages all nine Cartesian components; ``tensor_mae`` is DTNet's
    MAE_ten, the mean over the six unique components (xx, yy, zz, yz, xz, xy). a_r =
    lambda_max / lambda_min is a property of eps_inf and the total tensor, whose eigenvalues
    are at least 1; eps0 alone can have a zero eigenvalue, where the ratio is undefined, so
    ``anisotropy=False`` (:func:`has_anisotropy_ratio`) reports ``anisotropy_ratio_mae`` as
    ``None``.
    """
    if len(predicted) == 0:
        return {"n": 0}
    eig_p, eig_r = tmath.eigenvalues(predicted), tmath.eigenvalues(reference)
    difference = np.abs(tmath.symmetrize(predicted) - tmath.symmetrize(reference))
    ratio = float(np.mean(np.abs(_ratio(eig_p) - _ratio(eig_r)))) if anisotropy else None
    return {
        "n": int(len(predicted)),
        "eps_poly_mae": float(np.mean(np.abs(eig_p.mean(1) - eig_r.mean(1)))),
        "anisotropy_ratio_mae": ratio,
        "component_mae": float(difference.mean()),
        "tensor_mae": tensor_mae(predicted, reference),
    }


def calibration(
    members: np.ndarray,
    reference: np.ndarray,
    scales: dict[str, dict[str, Any]] | None = None,
    vacuum: np.ndarray | None = None,
) -> dict[str, dict[str, float]] | None:
    """How well the ensemble spread predicts the error of the ensemble mean.

    Parameters
    ----------
    members
        Predicted tensors of every member, shape (n_members, n, 3, 3).
    reference
        Reference tensors, shape (n, 3, 3).
    scales
        The model's spread calibration, fitted on validation
        (:func:`anisoscreen.model.spread_calibration.fit_spread_calibration`); with it the
        result also holds ``coverage_2sigma_calibrated``.
    vacuum
        (n,) whether each cell holds vacuum (picks the calibration's factor); default: none.

    Returns
    -------
    dict or None
        For ``eps_poly`` and ``anisotropy_ratio``: the Spearman correlation of the members'
        standard deviation with the absolute error of their mean, and the fraction of
        structures whose error lies within two standard deviations (``coverage_2sigma``;
        0.95 for a calibrated Gaussian spread). ``None`` for a single network.
    """
    if len(members) < 2:
        return None
    flags = np.zeros(members.shape[1], dtype=bool) if vacuum is None else np.asarray(vacuum)
    result = {}
    for name, q in spread_quantities(members, reference).items():
        sigma, error = q["sigma"], q["error"]
        rho = spearmanr(sigma, error).statistic if len(error) > 2 else float("nan")
        result[name] = {
            "spearman_spread_vs_error": float(rho),
            "coverage_2sigma": float(np.mean(error <= 2.0 * sigma)),
            "mean_spread": float(sigma.mean()),
        }
        if scales and name in scales:
            fitted = SpreadCalibration.from_dict(scales[name])
            calibrated = fitted.apply(sigma, flags)
            result[name]["spread_scale_dense"] = fitted.dense
            result[name]["spread_scale_vacuum"] = fitted.vacuum
            result[name]["coverage_2sigma_calibrated"] = float(np.mean(error <= 2.0 * calibrated))
    return result


def by_band_gap(
    predicted: np.ndarray,
    reference: np.ndarray,
    band_gaps: Sequence[float | None],
    anisotropy: bool = True,
) -> dict[str, dict[str, float | None]]:
    """Error blocks per PBE band-gap bin (:data:`GAP_BINS`), and for unknown gaps."""
    gaps = np.array([np.nan if g is None else float(g) for g in band_gaps])
    out = {}
    for label, low, high in GAP_BINS:
        mask = (gaps >= low) & (gaps < high)
        out[label] = error_block(predicted[mask], reference[mask], anisotropy)
    unknown = ~np.isfinite(gaps)
    out["gap unknown"] = error_block(predicted[unknown], reference[unknown], anisotropy)
    return out


def error_slices(
    members: np.ndarray,
    reference: np.ndarray,
    structures: Sequence[Structure],
    dimensionalities: Sequence[int | None] | None = None,
    scales: dict[str, dict[str, Any]] | None = None,
    vacuum: np.ndarray | None = None,
    anisotropy: bool = True,
) -> dict[str, Any]:
    """Error slices of an ensemble's mean prediction.

    Parameters
    ----------
    members
        Predicted tensors of every member, shape (n_members, n, 3, 3).
    reference
        Reference tensors, shape (n, 3, 3).
    structures
        The structures, in the same order (for the empty-slab width).
    dimensionalities
        Larsen dimensionality (0-3, ``None`` unknown) of each structure, if known.
    scales, vacuum
        The model's spread calibration and which cells hold vacuum (see :func:`calibration`).
    anisotropy
        Whether the tensors have an a_r (:func:`error_block`).

    Returns
    -------
    dict
        ``layered_gap`` (structures with an empty slab wider than :data:`LAYER_GAP`),
        ``eps_poly_tail`` (reference eps_poly above :data:`TAIL_EPS_POLY`),
        ``by_dimensionality`` (when given) and ``calibration``; each slice an
        :func:`error_block`.
    """
    predicted = members.mean(axis=0)
    gaps = np.array([largest_empty_slab(s)[0] for s in structures])
    tail = tmath.eigenvalues(reference).mean(-1) > TAIL_EPS_POLY
    layered = gaps > LAYER_GAP
    result: dict[str, Any] = {
        "layered_gap": {
            **error_block(predicted[layered], reference[layered], anisotropy),
            "threshold_angstrom": LAYER_GAP,
        },
        "eps_poly_tail": {
            **error_block(predicted[tail], reference[tail], anisotropy),
            "threshold": TAIL_EPS_POLY,
        },
        "calibration": calibration(members, reference, scales, vacuum),
    }
    if dimensionalities is not None:
        labels = np.array(
            [f"{d}D" if d is not None else "unknown" for d in dimensionalities], dtype=object
        )
        result["by_dimensionality"] = {
            label: error_block(predicted[labels == label], reference[labels == label], anisotropy)
            for label in sorted(set(labels))
        }
    return result

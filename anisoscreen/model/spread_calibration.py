"""Calibrated ensemble spreads: +-2 sigma intervals of eps_poly and a_r, fitted on validation.

An ensemble's raw spread ranks its errors but is too narrow, and by different factors for
dense crystals and for layers padded with vacuum. The calibration multiplies the raw spread
by one factor per regime: *dense* (no depolarisation) and *vacuum* (a non-zero one, see
:func:`anisoscreen.geometry.depolarisation_tensor`).

Each factor is a split-conformal quantile of ``|error| / (2 sigma)`` on the validation split
with its exfoliated copies: at level ``ceil((n + 1) * target) / n`` over ``n`` *groups*,
where a group is one validation entry together with all of its exfoliated copies and counts
with its largest ratio. The copies of one entry are not independent draws, so only the
entries are; a factor fitted on the copies one by one is too small by about a third on the
test split's copies (``studies/v3_calibration.py`` compares the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anisoscreen import tensor as tmath

__all__ = [
    "COVERAGE_TARGET",
    "RATIO_FLOOR",
    "SpreadCalibration",
    "conformal_factor",
    "fit_spread_calibration",
    "spread_quantities",
]

COVERAGE_TARGET = 0.95
"""Share of the errors that +-2 calibrated sigma is fitted to cover."""

RATIO_FLOOR = 1e-6
"""Floor on the smallest eigenvalue in a_r (predictions of a poor model can go below it)."""


@dataclass(frozen=True)
class SpreadCalibration:
    """Factors on one quantity's raw ensemble spread, for dense crystals and for vacuum."""

    dense: float = 1.0
    vacuum: float = 1.0

    def apply(self, sigma: np.ndarray, vacuum: np.ndarray | bool) -> np.ndarray:
        """Calibrated spreads of raw spreads ``sigma``; ``vacuum`` marks cells with vacuum."""
        return np.where(vacuum, self.vacuum, self.dense) * np.asarray(sigma, dtype=float)

    @property
    def by_regime(self) -> bool:
        """Whether the regime matters (the factors differ)."""
        return self.dense != self.vacuum

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in a model's metadata."""
        return {"dense": self.dense, "vacuum": self.vacuum}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpreadCalibration:
        """From :meth:`as_dict`, or from the v3.0 release's one factor ``{"scale": s}``."""
        if "dense" not in data:
            scale = float(data.get("scale", 1.0))
            return cls(scale, scale)
        return cls(float(data["dense"]), float(data["vacuum"]))


def spread_quantities(
    members: np.ndarray, reference: np.ndarray | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Ensemble mean, raw spread and (with ``reference``) absolute error of eps_poly and a_r.

    ``members`` has shape (n_members, n, 3, 3), ``reference`` (n, 3, 3).
    """

    def quantities(tensors: np.ndarray) -> dict[str, np.ndarray]:
        eig = tmath.eigenvalues(tensors)
        return {
            "eps_poly": eig.mean(-1),
            "anisotropy_ratio": tmath.eigenvalue_ratio(eig, floor=RATIO_FLOOR),
        }

    per_member = quantities(members)
    truth = quantities(reference) if reference is not None else {}
    out = {}
    for name, values in per_member.items():
        mean = values.mean(axis=0)
        out[name] = {"value": mean, "sigma": values.std(axis=0, ddof=1)}
        if reference is not None:
            out[name]["error"] = np.abs(mean - truth[name])
    return out


def conformal_factor(
    sigma: np.ndarray, error: np.ndarray, groups: np.ndarray, target: float = COVERAGE_TARGET
) -> float:
    """The split-conformal factor on ``2 sigma`` for coverage ``target`` of the groups."""
    ratio = np.asarray(error, dtype=float) / np.maximum(2.0 * np.asarray(sigma, dtype=float), 1e-12)
    groups = np.asarray(groups)
    _, index = np.unique(groups, return_inverse=True)
    worst = np.full(index.max() + 1, -np.inf)
    np.maximum.at(worst, index, ratio)
    n = len(worst)
    level = min(1.0, math.ceil((n + 1) * target) / n)
    return float(np.quantile(worst, level, method="higher"))


def fit_spread_calibration(
    members: np.ndarray,
    reference: np.ndarray,
    vacuum: np.ndarray,
    groups: np.ndarray,
    target: float = COVERAGE_TARGET,
) -> dict[str, dict[str, Any]]:
    """Per quantity, the factors of :class:`SpreadCalibration` fitted on validation.

    Parameters
    ----------
    members, reference
        Member tensors (n_members, n, 3, 3) and the reference tensors (n, 3, 3).
    vacuum
        (n,) whether each structure's cell holds vacuum.
    groups
        (n,) the entry each structure comes from (an exfoliated copy: its parent's).

    Returns
    -------
    dict
        ``{quantity: {"dense": s, "vacuum": s_v, "n_dense": ..., "n_vacuum_entries": ...}}``;
        a regime without structures takes the other's factor.
    """
    vacuum = np.asarray(vacuum, dtype=bool)
    groups = np.asarray(groups)
    out = {}
    for name, q in spread_quantities(members, reference).items():
        factors = {}
        for regime, mask in (("dense", ~vacuum), ("vacuum", vacuum)):
            if mask.any():
                factors[regime] = conformal_factor(
                    q["sigma"][mask], q["error"][mask], groups[mask], target
                )
        if not factors:
            raise ValueError("no structures to fit the spread calibration on")
        fallback = next(iter(factors.values()))
        out[name] = {
            "dense": factors.get("dense", fallback),
            "vacuum": factors.get("vacuum", fallback),
            "n_dense": int((~vacuum).sum()),
            "n_vacuum_entries": len(np.unique(groups[vacuum])),
        }
    return out

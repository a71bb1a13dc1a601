"""The quantity a campaign maximises, computed from dielectric tensors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.errors import AnisoscreenError

__all__ = ["OBJECTIVES", "objective_values"]


def _anisotropy_ratio(tensors: np.ndarray) -> np.ndarray:
    return np.asarray(tmath.anisotropy_ratio(tensors, floor=1e-6))


def _eps_poly(tensors: np.ndarray) -> np.ndarray:
    return tmath.eigenvalues(tensors).mean(axis=-1)


def _birefringence(tensors: np.ndarray) -> np.ndarray:
    # eigenvalues floored like a_r's: a member with a non-positive one still gets a value
    n = np.sqrt(np.clip(tmath.eigenvalues(tensors), 1e-6, None))
    return n[..., -1] - n[..., 0]


OBJECTIVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ar": _anisotropy_ratio,
    "eps-poly": _eps_poly,
    "birefringence": _birefringence,
}
"""Objective name -> function of 3x3 tensors (any leading shape) to values."""


def objective_values(tensors: np.ndarray, objective: str) -> np.ndarray:
    """Values of ``objective`` for tensors of shape ``(..., 3, 3)``.

    Parameters
    ----------
    tensors
        Symmetric dielectric tensors.
    objective
        ``"ar"`` (anisotropy ratio, largest over smallest eigenvalue), ``"eps-poly"`` or
        ``"birefringence"`` (``sqrt(lambda_max) - sqrt(lambda_min)``).
    """
    if objective not in OBJECTIVES:
        raise AnisoscreenError(f"unknown objective {objective!r}; choose from {sorted(OBJECTIVES)}")
    return OBJECTIVES[objective](np.asarray(tensors, dtype=float))

"""The refine stage's blend of two eps0 values, and its weights fitted on a grid.

Not a script: the studies that fit ``PREDICTED_BLEND_WEIGHTS`` import it (``blend_fit.py``
and ``ionic_physics_study.py hybrid``), so both search the same grid the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

WEIGHT_GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)
"""Each weight's candidates: 0 to 1 in steps of 0.05."""


def blend(
    direct: np.ndarray,
    physics: np.ndarray,
    used: np.ndarray,
    physics_weight: float,
    direct_weight: float | None = None,
) -> np.ndarray:
    """``direct_weight direct + physics_weight physics`` where ``used``, else ``direct``.

    ``direct_weight=None`` is ``1 - physics_weight`` (``direct + w (physics - direct)``).
    """
    kept = 1.0 - physics_weight if direct_weight is None else direct_weight
    mixed = kept * direct + physics_weight * physics
    return np.where(np.asarray(used)[:, None, None], mixed, direct)


def best_weights(error: Callable[[float, float], float]) -> tuple[float, float]:
    """``(physics_weight, direct_weight)`` on the grid with the smallest ``error``."""
    pairs = [(float(p), float(d)) for p in WEIGHT_GRID for d in WEIGHT_GRID]
    return pairs[int(np.argmin([error(p, d) for p, d in pairs]))]


SCALE_GRID = np.round(np.arange(0.6, 1.2001, 0.025), 3)
"""The log blend's overall scale candidates: 0.6 to 1.2 in steps of 0.025."""


def _matrix_function(
    tensors: np.ndarray, function: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``function`` of each symmetric (3, 3) tensor, through its eigenvalues."""
    values, vectors = np.linalg.eigh(tensors)
    return (vectors * function(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def log_blend(
    direct: np.ndarray, physics: np.ndarray, used: np.ndarray, weight: float, scale: float
) -> np.ndarray:
    """``scale (exp(w log(I + physics) + (1 - w) log(I + direct)) - I)`` where ``used``.

    A geometric mean of ``I + eps0`` (matrix logarithms): errors that are ratios, as a
    softened mode's, weigh alike at every size of eps0. ``direct`` elsewhere.
    """
    identity = np.eye(3)

    def log(tensors: np.ndarray) -> np.ndarray:
        return _matrix_function(identity + tensors, lambda x: np.log(np.clip(x, 1e-6, None)))

    mixed = scale * (
        _matrix_function(weight * log(physics) + (1 - weight) * log(direct), np.exp) - identity
    )
    return np.where(np.asarray(used)[:, None, None], mixed, direct)

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

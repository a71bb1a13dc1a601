"""Issue 28: the blend weighted per cell by the two routes' ensemble spreads.

The refine stage's blend (``PREDICTED_BLEND_WEIGHTS``) gives every unflagged cell the same two
weights. Two estimates with known variances combine best by inverse variance, so this study
weighs each cell's physics value by ``w = s_d^2 / (s_d^2 + c s_p^2)``: ``s_d`` the direct
ionic model's member spread and ``s_p`` that of the physics eps0 over the Born model's members
(each member's charges with the same force constants), both as the RMS over the six unique
components. The physics value is also scaled by ``a`` (a potential's softened modes inflate
it), so a cell's eps0 is ``w a physics + (1 - w) direct``. ``c`` and ``a`` are chosen on every
validation cell under 40 sites by the ionic MAE_ten; the rule, fixed before either split was
scored: keep it only if validation beats the constant blend by at least 1 %.

It reads the force constants that ``anisoscreen evaluate --refine-charges predicted`` cached
(the same data dir as ``blend_fit.py``)::

    ANISOSCREEN_DATA_DIR=runs/ionic-eval python studies/blend_spread.py \\
        --output studies/results/ionic-physics-blend-spread.json
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from _blend import SCALE_GRID, best_weights, blend, blend_inputs, both_splits, cached_cells, scores
from _study_io import save_study

from anisoscreen.ionic_physics.route import physics_ionic
from anisoscreen.model.born_charges import predict_born_charges
from anisoscreen.model.checkpoint import load_model
from anisoscreen.screening.ionic_refine import PREDICTED_BLEND_WEIGHTS, PREDICTED_POTENTIAL
from anisoscreen.settings import DEFAULT_BORN_MODEL

UPPER = np.triu_indices(3)
RATIO_GRID = np.geomspace(0.01, 100.0, 41)
"""Candidates of ``c``, the physics variance's weight against the direct one."""


def _spread(members: np.ndarray) -> np.ndarray:
    """RMS over the six unique components of the members' standard deviation, per cell."""
    return np.sqrt((members.std(axis=0)[:, UPPER[0], UPPER[1]] ** 2).mean(axis=1))


def _split(subset: str, cleaned: list[Any], data: Path) -> dict[str, Any]:
    """The blend's inputs of one split, with each route's member spread."""
    part = blend_inputs(subset, cleaned, data, PREDICTED_POTENTIAL, DEFAULT_BORN_MODEL)
    born = load_model(DEFAULT_BORN_MODEL)
    members = [dataclasses.replace(born, networks=[net]) for net in born.networks]
    # the physics eps0 of each member's charges, on the cells whose physics value is used
    per_member = np.zeros((len(members), len(part["direct"]), 3, 3))
    for row, structure, (fc,) in cached_cells(
        part, np.flatnonzero(part["used"]), [PREDICTED_POTENTIAL]
    ):
        for k, member in enumerate(members):
            charges = predict_born_charges(member, [structure])[0]
            per_member[k, row] = physics_ionic(structure, charges, fc).eps_ionic
    return {
        **part,
        "direct_spread": _spread(part["direct_members"]),
        "physics_spread": _spread(per_member),
    }


def _weights(part: dict[str, Any], ratio: float) -> np.ndarray:
    """Each cell's physics weight ``w = s_d^2 / (s_d^2 + ratio s_p^2)``."""
    direct_var = part["direct_spread"] ** 2
    return direct_var / np.maximum(direct_var + ratio * part["physics_spread"] ** 2, 1e-12)


def _spread_blend(part: dict[str, Any], ratio: float, scale: float) -> np.ndarray:
    """``w scale physics + (1 - w) direct`` where the physics value is used (:func:`_weights`)."""
    weight = _weights(part, ratio)
    mixed = weight[:, None, None] * scale * part["physics"]
    mixed = mixed + (1.0 - weight[:, None, None]) * part["direct"]
    return np.where(part["used"][:, None, None], mixed, part["direct"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    parts = both_splits(_split)
    validation = parts["validation"]

    def constant(part: dict[str, Any], weights: tuple[float, float]) -> np.ndarray:
        return blend(part["direct"], part["physics"], part["used"], *weights)

    weights = best_weights(
        lambda p, d: scores(validation, constant(validation, (p, d)))["ionic_mae_ten"]
    )
    pairs = [(float(c), float(a)) for c in RATIO_GRID for a in SCALE_GRID]
    errors = [
        scores(validation, _spread_blend(validation, *pair))["ionic_mae_ten"] for pair in pairs
    ]
    ratio, scale = pairs[int(np.argmin(errors))]
    study = {
        "what": "per-cell inverse-variance blend w scale physics + (1 - w) direct, w = s_d^2 / "
        "(s_d^2 + ratio s_p^2) from the two ensembles' spreads, against the constant blend; "
        "both fitted on every validation cell under 40 sites",
        "in_use": PREDICTED_BLEND_WEIGHTS[PREDICTED_POTENTIAL],
        "constant": {
            "weights": weights,
            **{s: scores(p, constant(p, weights)) for s, p in parts.items()},
        },
        "spread_weighted": {
            "ratio": ratio,
            "scale": scale,
            **{s: scores(p, _spread_blend(p, ratio, scale)) for s, p in parts.items()},
        },
        "median_weight": {
            s: float(np.median(_weights(p, ratio)[p["used"]])) for s, p in parts.items()
        },
    }
    for name in ("constant", "spread_weighted"):
        print(name, {s: round(study[name][s]["ionic_mae_ten"], 4) for s in parts})
    save_study(study, args.output, f"ratio {ratio:.3g}, scale {scale}; ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 28: the blend weighted per cell by the two routes' ensemble spreads.

The constant blend (``blend_fit.py``) gives every unflagged cell the same two weights. Two
estimates with known variances combine best by inverse variance, so this study weighs each
cell's physics value by ``w = s_d^2 / (s_d^2 + c s_p^2)``: ``s_d`` the direct ionic model's
member spread and ``s_p`` that of the physics eps0 over the Born model's members (each
member's charges with the same force constants), both as the RMS over the six unique
components of the standard deviation (ddof 1), through the refine stage's functions
(:func:`~anisoscreen.ionic_physics.route.physics_spread`, ``spread_share``). The physics value
is also scaled by ``a`` (a potential's softened modes inflate it), so a cell's eps0 is ``w a
physics + (1 - w) direct``. ``c`` and ``a`` are chosen on every validation cell under 40 sites
by the ionic MAE_ten; the rule, fixed before either split was scored: keep it only if
validation beats the constant blend by at least 1 %. It was kept: the refine stage's
``spread_ratio`` and ``physics_weight`` for SevenNet-l3i5 (``PREDICTED_BLENDS``) are ``c`` and
``a`` from here.

The charges' spread leaves out the potential's error. ``--potential-spread P ...`` adds a
measure of it, tried beside the kept blend: ``s_f``, the spread (ddof 1) of the physics eps0
over SevenNet-l3i5 and the potentials ``P`` (each with the mean charges), so that ``w = s_d^2
/ (s_d^2 + c s_p^2 + k s_f^2)``, with ``k`` chosen on validation too and the same rule
against the kept blend. Their force constants must be cached as well (``blend_fit.py
--potential P``).

It reads the force constants that ``anisoscreen evaluate --refine-charges predicted`` cached
(the same data dir as ``blend_fit.py``)::

    ANISOSCREEN_DATA_DIR=runs/ionic-eval python studies/blend_spread.py \\
        --output studies/results/ionic-physics-blend-spread.json

``--born-model`` scores another Born model (a ``model.pt``) than the shipped one;
``--validation-only`` leaves the test split out (a choice made before it is scored).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _blend import (
    SCALE_GRID,
    best_weights,
    blend,
    blend_inputs,
    bootstrap_interval,
    both_splits,
    cached_cells,
    scores,
)
from _study_io import save_study

from anisoscreen.ionic_physics.route import ensemble_spread, physics_ionic, spread_share
from anisoscreen.model.born_charges import predict_born_charge_members
from anisoscreen.model.checkpoint import load_model
from anisoscreen.screening.ionic_refine import PREDICTED_BLENDS, PREDICTED_POTENTIAL
from anisoscreen.settings import DEFAULT_BORN_MODEL

RATIO_GRID = np.geomspace(0.01, 100.0, 41)
"""Candidates of ``c``, the physics variance's weight against the direct one."""


def _split(
    subset: str,
    cleaned: list[Any],
    data: Path,
    others: Sequence[str] = (),
    born_model: str = DEFAULT_BORN_MODEL,
) -> dict[str, Any]:
    """The blend's inputs of one split, with each route's member spread (the stage's own).

    ``potential_spread``: the spread of the physics eps0 over SevenNet-l3i5 and ``others``.
    """
    part = blend_inputs(subset, cleaned, data, PREDICTED_POTENTIAL, born_model)
    # the spread of the physics eps0 over the potentials, where the physics value is used
    potentials = np.zeros(len(part["direct"]))
    if others:
        born = load_model(born_model)
        for row, structure, (_, *other_fcs) in cached_cells(
            part, np.flatnonzero(part["used"]), [PREDICTED_POTENTIAL, *others]
        ):
            charges = predict_born_charge_members(born, [structure])[0].mean(axis=0)
            values = [physics_ionic(structure, charges, f).eps_ionic for f in other_fcs]
            values.append(part["physics"][row])
            potentials[row] = ensemble_spread(np.std(values, axis=0, ddof=1))
    return {
        **part,
        "direct_spread": ensemble_spread(part["direct_members"].std(axis=0, ddof=1)),
        "physics_spread": np.nan_to_num(part["physics_spread"]),
        "potential_spread": potentials,
    }


def _weights(part: dict[str, Any], ratio: float, potential_ratio: float = 0.0) -> np.ndarray:
    """Each cell's physics share ``w = s_d^2 / (s_d^2 + ratio s_p^2 + potential_ratio s_f^2)``."""
    spread = np.sqrt(
        part["physics_spread"] ** 2 + potential_ratio / ratio * part["potential_spread"] ** 2
    )
    return spread_share(part["direct_spread"], spread, ratio)


def _spread_blend(
    part: dict[str, Any], ratio: float, scale: float, potential_ratio: float = 0.0
) -> np.ndarray:
    """``w scale physics + (1 - w) direct`` where the physics value is used (:func:`_weights`)."""
    weight = _weights(part, ratio, potential_ratio)
    mixed = weight[:, None, None] * scale * part["physics"]
    mixed = mixed + (1.0 - weight[:, None, None]) * part["direct"]
    return np.where(part["used"][:, None, None], mixed, part["direct"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--potential-spread", nargs="*", default=[], metavar="P")
    parser.add_argument("--born-model", default=DEFAULT_BORN_MODEL, help="name or model.pt")
    parser.add_argument("--validation-only", action="store_true", help="leave the test split")
    args = parser.parse_args()
    parts = both_splits(
        lambda s, c, d: _split(s, c, d, args.potential_spread, args.born_model),
        ("validation",) if args.validation_only else ("validation", "test"),
    )
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
        "born_model": args.born_model,
        "in_use": dataclasses.asdict(PREDICTED_BLENDS[PREDICTED_POTENTIAL]),
        "constant": {
            "weights": weights,
            **{s: scores(p, constant(p, weights)) for s, p in parts.items()},
        },
        "spread_weighted": {
            "ratio": ratio,
            "scale": scale,
            **{s: scores(p, _spread_blend(p, ratio, scale)) for s, p in parts.items()},
        },
        "spread_weighted_95_interval": {
            s: bootstrap_interval(p, _spread_blend(p, ratio, scale)) for s, p in parts.items()
        },
        "median_weight": {
            s: float(np.median(_weights(p, ratio)[p["used"]])) for s, p in parts.items()
        },
    }
    if args.potential_spread:  # tried beside it: the potentials' disagreement as a variance
        triples = [
            (ratio_, float(k), a)
            for ratio_, a in pairs
            for k in np.concatenate([[0.0], np.geomspace(0.001, 10.0, 21)])
        ]
        errors = [
            scores(validation, _spread_blend(validation, c, a, k))["ionic_mae_ten"]
            for c, k, a in triples
        ]
        c, k, a = triples[int(np.argmin(errors))]
        study["with_potential_spread"] = {
            "potentials": [PREDICTED_POTENTIAL, *args.potential_spread],
            "ratio": c,
            "potential_ratio": k,
            "scale": a,
            **{s: scores(p, _spread_blend(p, c, a, k)) for s, p in parts.items()},
        }
    for name in ("constant", "spread_weighted", "with_potential_spread"):
        if name in study:
            print(name, {s: round(study[name][s]["ionic_mae_ten"], 4) for s in parts})
    save_study(study, args.output, f"ratio {ratio:.3g}, scale {scale}; ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

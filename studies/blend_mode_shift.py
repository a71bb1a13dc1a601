"""Issue 28: the physics eps0 with every polar mode stiffened by a shift of omega^2.

A universal potential softens phonons, and eps0 goes as ``1 / omega^2``, so a slightly soft
mode that the route keeps (above its 1 THz cap) can inflate a cell's eps0 several-fold. A
constant scale of eps0 (the blend's ``w_p``) corrects a uniform softening; a shift
``omega^2 -> omega^2 + delta`` tames the softest modes most. This recomputes the route's eps0
of every unflagged cell under 40 sites from its kept modes with a shift ``delta`` (THz^2) on a
grid, refits the blend's two weights on validation for each, and picks ``delta`` on
validation. The rule, fixed before either split was scored: keep it only if validation beats
the unshifted blend by at least 1 %.

It reads the force constants that ``anisoscreen evaluate --refine-charges predicted`` cached
(the same data dir as ``blend_fit.py``)::

    ANISOSCREEN_DATA_DIR=runs/ionic-eval python studies/blend_mode_shift.py \\
        --output studies/results/ionic-physics-blend-mode-shift.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from _blend import best_weights, blend, blend_inputs, both_splits, cached_cells, scores
from _study_io import save_study

from anisoscreen.ionic_physics.formula import EPS0_PREFACTOR, EV_A2_AMU_TO_THZ
from anisoscreen.ionic_physics.route import physics_ionic
from anisoscreen.model.born_charges import predict_born_charges
from anisoscreen.model.checkpoint import load_model
from anisoscreen.screening.ionic_refine import PREDICTED_POTENTIAL
from anisoscreen.settings import DEFAULT_BORN_MODEL

SHIFTS_THZ2 = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
"""Candidates of ``delta``, in THz^2 (a mode at 1 THz with ``delta`` 1 moves to 1.41 THz)."""


def _split(subset: str, cleaned: list[Any], data: Path) -> dict[str, Any]:
    """The blend's inputs of one split with each used cell's kept modes."""
    part = blend_inputs(subset, cleaned, data, PREDICTED_POTENTIAL, DEFAULT_BORN_MODEL)
    born = load_model(DEFAULT_BORN_MODEL)
    modes = {}
    for row, structure, (fc,) in cached_cells(
        part, np.flatnonzero(part["used"]), [PREDICTED_POTENTIAL]
    ):
        result = physics_ionic(structure, predict_born_charges(born, [structure])[0], fc)
        kept = result.included
        assert result.modes.oscillator_strengths is not None
        strengths = result.modes.oscillator_strengths[kept]
        modes[row] = (result.modes.omega2[kept], strengths, structure.volume)
    return {**part, "modes": modes}


def _shifted(part: dict[str, Any], delta_thz2: float) -> np.ndarray:
    """The physics eps0 with ``omega^2 + delta`` in each kept mode's denominator."""
    physics = part["physics"].copy()
    delta = delta_thz2 / EV_A2_AMU_TO_THZ**2
    for row, (omega2, strengths, volume) in part["modes"].items():
        physics[row] = (
            EPS0_PREFACTOR / volume * (strengths / (omega2 + delta)[:, None, None]).sum(0)
        )
    return physics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    parts = both_splits(_split)
    validation = parts["validation"]
    rows = []
    for delta in SHIFTS_THZ2:
        physics = {s: _shifted(p, delta) for s, p in parts.items()}

        def mixed(
            s: str, p: float, d: float, physics: dict[str, np.ndarray] = physics
        ) -> np.ndarray:
            return blend(parts[s]["direct"], physics[s], parts[s]["used"], p, d)

        weights = best_weights(
            lambda p, d: scores(validation, mixed("validation", p, d))["ionic_mae_ten"]
        )
        rows.append(
            {"delta_thz2": delta, "weights": weights}
            | {s: scores(parts[s], mixed(s, *weights)) for s in parts}
        )
        print(delta, weights, {s: round(rows[-1][s]["ionic_mae_ten"], 4) for s in parts})
    chosen = min(rows, key=lambda r: r["validation"]["ionic_mae_ten"])
    study = {
        "what": "the refine stage's blend with the physics eps0 of each unflagged cell under 40 "
        "sites recomputed with omega^2 + delta on its kept modes; weights refitted on "
        "validation for each delta, delta chosen on validation",
        "potential": PREDICTED_POTENTIAL,
        "born_model": DEFAULT_BORN_MODEL,
        "chosen_delta_thz2": chosen["delta_thz2"],
        "by_delta": rows,
    }
    save_study(study, args.output, f"delta {chosen['delta_thz2']} THz^2; ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

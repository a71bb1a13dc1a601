"""Issue 28: the refine stage's physics value from two potentials instead of one.

SevenNet-l3i5 and SevenNet-0 soften different modes: where one potential's springs are too
soft, ``1 / omega^2`` inflates its eps0, and the other's may not. Two ways of using both, each
in the stage's blend ``w_d direct + w_p physics`` with the predicted Born charges:

* ``eps0_mean``: ``u`` times l3i5's physics eps0 plus ``1 - u`` times SevenNet-0's where neither
  is flagged; the unflagged one where only one is; the direct value where both are;
* ``phi_mean``: the physics route on the mean of the two force-constant matrices (springs
  averaged, so a mode soft in one potential only is stiffened by the other), flagged by the
  route's own rules.

``u``, ``w_p`` and ``w_d`` are chosen on every validation cell under 40 sites by the ionic
MAE_ten; the test split is scored once with them. The rule, fixed before either split was
scored: a variant replaces the one-potential blend only if it is at least 1 % better on
validation.

It reads the force constants that ``anisoscreen evaluate --refine-charges predicted`` cached,
once per potential (the same data dir as ``blend_fit.py``; SevenNet-0: about 20 minutes a split
on one core)::

    for s in validation test; do for p in sevennet-l3i5 sevennet-0; do
      ANISOSCREEN_DATA_DIR=runs/ionic-eval anisoscreen evaluate --subset $s \\
          --ionic-model anisonet-mp-ionic-v1 --refine-charges predicted --refine-potential $p
    done; done
    ANISOSCREEN_DATA_DIR=runs/ionic-eval python studies/blend_potentials.py \\
        --output studies/results/ionic-physics-blend-potentials.json
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from _blend import WEIGHT_GRID, best_weights, blend, blend_inputs, both_splits, cached_cells, scores
from _study_io import save_study

from anisoscreen.ionic_physics.route import physics_ionic
from anisoscreen.model.born_charges import predict_born_charges
from anisoscreen.model.checkpoint import load_model
from anisoscreen.screening.ionic_refine import PREDICTED_BLENDS, PREDICTED_POTENTIAL
from anisoscreen.settings import DEFAULT_BORN_MODEL

SECOND_POTENTIAL = "sevennet-0"


def _phi_mean(part: dict[str, Any], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The physics eps0 on the mean force constants of both potentials, and where it is used."""
    born = load_model(DEFAULT_BORN_MODEL)
    physics = np.zeros_like(part["direct"])
    used = np.zeros(len(physics), dtype=bool)
    potentials = [PREDICTED_POTENTIAL, SECOND_POTENTIAL]
    for row, structure, (first, second) in cached_cells(part, rows, potentials):
        mean = dataclasses.replace(
            first,
            phi=(first.phi + second.phi) / 2,
            residual_forces=(first.residual_forces + second.residual_forces) / 2,
        )
        result = physics_ionic(structure, predict_born_charges(born, [structure])[0], mean)
        physics[row], used[row] = result.eps_ionic, not result.flags
    return physics, used


def _split(subset: str, cleaned: list[Any], data: Path) -> dict[str, Any]:
    """The blend's inputs of one split with each potential's physics value and both means."""
    first = blend_inputs(subset, cleaned, data, PREDICTED_POTENTIAL, DEFAULT_BORN_MODEL)
    second = blend_inputs(subset, cleaned, data, SECOND_POTENTIAL, DEFAULT_BORN_MODEL)
    under = np.array([len(s) < 40 for s in first["structures"]])
    phi_physics, phi_used = _phi_mean(first, np.flatnonzero(under))
    return {
        **first,
        "physics_second": second["physics"],
        "used_second": second["used"],
        "phi_physics": phi_physics,
        "phi_used": phi_used,
    }


def _eps0_mean(part: dict[str, Any], share: float) -> tuple[np.ndarray, np.ndarray]:
    """``share`` of l3i5's physics eps0 plus the rest of SevenNet-0's, and where it is used."""
    a, b = part["used"], part["used_second"]
    both = share * part["physics"] + (1 - share) * part["physics_second"]
    physics = np.where(
        (a & b)[:, None, None],
        both,
        np.where(a[:, None, None], part["physics"], part["physics_second"]),
    )
    return physics, a | b


def _score(part: dict[str, Any], physics: np.ndarray, used: np.ndarray, weights: Any) -> float:
    return scores(part, blend(part["direct"], physics, used, *weights))["ionic_mae_ten"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    parts = both_splits(_split)
    validation = parts["validation"]

    def fitted(physics_of: Any) -> dict[str, Any]:
        """Weights chosen on validation for one variant, and both splits scored with them."""
        physics, used = physics_of(validation)
        weights = best_weights(lambda p, d: _score(validation, physics, used, (p, d)))
        out: dict[str, Any] = {"weights": weights}
        for s, part in parts.items():
            physics, used = physics_of(part)
            ionic = blend(part["direct"], physics, used, *weights)
            out[s] = {**scores(part, ionic), "n_physics": int(used.sum())}
        return out

    one = fitted(lambda part: (part["physics"], part["used"]))
    second = fitted(lambda part: (part["physics_second"], part["used_second"]))
    shares = {float(u): fitted(lambda part, u=u: _eps0_mean(part, u)) for u in WEIGHT_GRID}
    share = min(shares, key=lambda u: shares[u]["validation"]["ionic_mae_ten"])
    phi = fitted(lambda part: (part["phi_physics"], part["phi_used"]))
    study = {
        "what": "the refine stage's blend w_d direct + w_p physics with the physics eps0 of "
        f"{PREDICTED_POTENTIAL} alone, {SECOND_POTENTIAL} alone, their eps0 mixed (share u of "
        f"{PREDICTED_POTENTIAL}) and the route on their mean force constants; predicted charges "
        f"({DEFAULT_BORN_MODEL}), every weight chosen on every validation cell under 40 sites",
        "in_use": dataclasses.asdict(PREDICTED_BLENDS[PREDICTED_POTENTIAL]),
        "n": {s: int(len(p["direct"])) for s, p in parts.items()},
        PREDICTED_POTENTIAL: one,
        SECOND_POTENTIAL: second,
        "eps0_mean": {"share": share, **shares[share]},
        "eps0_mean_by_share": {str(u): f["validation"]["ionic_mae_ten"] for u, f in shares.items()},
        "phi_mean": phi,
    }
    for name in (PREDICTED_POTENTIAL, SECOND_POTENTIAL, "eps0_mean", "phi_mean"):
        print(
            name,
            study[name]["weights"],
            {s: round(study[name][s]["ionic_mae_ten"], 4) for s in parts},
        )
    save_study(study, args.output, f"eps0 share {share}; ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

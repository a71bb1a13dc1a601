"""Issue 28: the predicted-charge blend's weights fitted on every validation cell.

The refine stage's blend ``w_d direct + w_p physics`` (``PREDICTED_BLENDS``) was fitted
by ``ionic_physics_study.py hybrid`` on 120 validation cells: those with DFPT Born charges.
The blend serves new candidates, which have none, and the test split is scored on every cell
under 40 sites. This fits the two weights on every validation cell under 40 sites instead,
through the package's own path: ``evaluate_model_set`` for the direct values and
``refine_model_set`` with the physics value alone (weight 1, no direct weight) for the
physics ones, on the force constants ``anisoscreen evaluate --refine-charges predicted``
cached in the results store (run it first on both splits, with the same data dir):

    ANISOSCREEN_DATA_DIR=runs/ionic-eval anisoscreen evaluate --subset validation \\
        --ionic-model anisonet-mp-ionic-v1 --refine-charges predicted
    ANISOSCREEN_DATA_DIR=runs/ionic-eval anisoscreen evaluate \\
        --ionic-model anisonet-mp-ionic-v1 --refine-charges predicted
    ANISOSCREEN_DATA_DIR=runs/ionic-eval python studies/blend_fit.py \\
        --output studies/results/ionic-physics-blend-fit-all-validation.json

Both weights on a grid of 0.05 in [0, 1], chosen by the validation ionic MAE_ten; the test
split is scored with them and with the weights in use, for comparison. So is a blend of the
two tensors' matrix logarithms (``_blend.log_blend``), its weight and scale also chosen on
validation. ``--born-model`` scores another Born model (a name or a ``model.pt``) on the same
force constants; its charges are scored too, on each split's cells with DFPT charges.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from _blend import (
    SCALE_GRID,
    WEIGHT_GRID,
    best_weights,
    blend,
    blend_inputs,
    bootstrap_interval,
    born_mae,
    both_splits,
    log_blend,
    scores,
)
from _study_io import save_study

from anisoscreen.screening.ionic_refine import PREDICTED_BLENDS
from anisoscreen.settings import DEFAULT_BORN_MODEL


def _scores(
    part: dict[str, Any], weights: tuple[float, float], log_space: bool = False
) -> dict[str, float]:
    mix = log_blend if log_space else blend
    ionic = mix(part["direct"], part["physics"], part["used"], *weights)
    names = ("physics_weight", "scale") if log_space else ("physics_weight", "direct_weight")
    return {names[0]: weights[0], names[1]: weights[1], **scores(part, ionic)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--potential", default="sevennet-l3i5")
    parser.add_argument("--born-model", default=DEFAULT_BORN_MODEL, help="name or model.pt")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    parts = both_splits(
        lambda s, cleaned, data: (
            blend_inputs(s, cleaned, data, args.potential, args.born_model)
            | {"born_charges": born_mae(s, cleaned, args.born_model)}
        )
    )
    chosen = best_weights(lambda p, d: _scores(parts["validation"], (p, d))["ionic_mae_ten"])
    in_use = PREDICTED_BLENDS.get(args.potential)  # None: no blend measured for it yet
    # tried beside it: the geometric mean of I + eps0, weight and scale chosen on validation
    pairs = [(float(w), float(s)) for w in WEIGHT_GRID for s in SCALE_GRID]
    errors = [_scores(parts["validation"], pair, log_space=True)["ionic_mae_ten"] for pair in pairs]
    log_chosen = pairs[int(np.argmin(errors))]
    study = {
        "what": "w_d direct + w_p physics on the unflagged cells under 40 sites (predicted "
        f"charges, {args.potential} force constants), both weights chosen on every validation "
        "cell under 40 sites by the ionic MAE_ten; scored on the whole test split",
        "potential": args.potential,
        "born_model": args.born_model,
        "born_charges": {s: p["born_charges"] for s, p in parts.items()},
        "n": {s: int(len(p["direct"])) for s, p in parts.items()},
        "n_physics": {s: int(p["used"].sum()) for s, p in parts.items()},
        "chosen": {s: _scores(p, chosen) for s, p in parts.items()},
        # a spread-weighted blend in use is blend_spread.py's to score
        "in_use": {
            s: _scores(p, (in_use.physics_weight, in_use.direct_weight))
            for s, p in parts.items()
            if in_use is not None and in_use.spread_ratio is None
        },
        "direct": {s: _scores(p, (0.0, 1.0)) for s, p in parts.items()},
        "chosen_95_interval": {
            s: bootstrap_interval(p, blend(p["direct"], p["physics"], p["used"], *chosen))
            for s, p in parts.items()
        },
        "log_space_chosen": {s: _scores(p, log_chosen, log_space=True) for s, p in parts.items()},
    }
    print("born charges", {s: round(v["born_mae"], 4) for s, v in study["born_charges"].items()})
    for name in ("direct", "in_use", "chosen", "log_space_chosen"):  # in_use: maybe empty
        print(name, {s: round(v["ionic_mae_ten"], 4) for s, v in study[name].items()})
    save_study(study, args.output, f"chosen {chosen}; ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

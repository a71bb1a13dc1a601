"""Issue 28: variants of the direct ionic model, scored alone and inside the refine stage.

The refine stage blends the physics eps0 with the direct model's (``w_d direct + w_p
physics``) and keeps the direct value on flagged cells and cells of 40 sites or more, so a
better direct model helps both routes. Each variant (a ``model.pt``, trained from a recipe in
``studies/recipes/ionic-v2/``) is scored on the validation split against the same seeds of the
shipped ionic model (``--members``, 0-based):

* the direct model alone: ionic and total MAE_ten (eps_inf from the default model);
* the refine stage's blend with it, both weights chosen on validation (predicted charges,
  SevenNet-l3i5 force constants cached by ``anisoscreen evaluate --refine-charges predicted``).

Only the validation split is scored: the test split is for the variant chosen here.
Run with the data dir that holds the cached force constants::

    ANISOSCREEN_DATA_DIR=runs/ionic-eval python studies/ionic_direct_variants.py \\
        --variant elements=runs/ionic-v2/anisonet-mp-ionic-v2/model.pt --members 0 1 \\
        --output studies/results/ionic-direct-variants.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _blend import best_weights, blend, blend_inputs, scores
from _study_io import save_study

from anisoscreen.model.training.dataset import clean_entries, load_entries
from anisoscreen.screening.ionic_refine import PREDICTED_POTENTIAL
from anisoscreen.settings import DEFAULT_BORN_MODEL, DEFAULT_IONIC_MODEL, get_settings


def _score(part: dict[str, Any], members: list[int] | None) -> dict[str, Any]:
    """The direct model's errors (``members``' mean) and the blend refitted with it."""
    direct = part["direct_members"][members].mean(axis=0) if members else part["direct"]
    part = {**part, "direct": direct}

    def blended(p: float, d: float) -> Any:
        return blend(part["direct"], part["physics"], part["used"], p, d)

    weights = best_weights(lambda p, d: scores(part, blended(p, d))["ionic_mae_ten"])
    return {
        "members": members,
        "direct": scores(part, direct),
        "blend_weights": weights,
        "blend": scores(part, blended(*weights)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", action="append", default=[], help="label=model.pt")
    parser.add_argument("--members", type=int, nargs="*", help="the reference's members")
    parser.add_argument("--subset", default="validation")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    cleaned = clean_entries(load_entries(data))[0]
    models = {DEFAULT_IONIC_MODEL: (DEFAULT_IONIC_MODEL, args.members)}
    models.update({v.split("=")[0]: (v.split("=", 1)[1], None) for v in args.variant})
    study: dict[str, Any] = {"subset": args.subset, "potential": PREDICTED_POTENTIAL}
    for label, (model, members) in models.items():
        part = blend_inputs(
            args.subset, cleaned, data, PREDICTED_POTENTIAL, DEFAULT_BORN_MODEL, model
        )
        study[label] = {"model": model, **_score(part, members)}
        row = study[label]
        print(
            f"{label}: direct ionic {row['direct']['ionic_mae_ten']:.4f} total "
            f"{row['direct']['total_mae_ten']:.4f}; blend {row['blend_weights']} ionic "
            f"{row['blend']['ionic_mae_ten']:.4f} total {row['blend']['total_mae_ten']:.4f}"
        )
    save_study(study, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

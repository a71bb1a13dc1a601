"""The model-v2 read-out/loss study: compare variants, pick the winner on validation, ship it.

    python studies/v2_study.py [--study-dir runs/v2-study] [--ship]

Variants (each trained with ``anisoscreen train --config models/anisonet-mp-v1/recipe.yaml
--seed 0 --seed 1 --seed 2 --output-dir STUDY_DIR`` plus the options below, exactly like v1's
members: same data, cleaning, split (seed 42), network size, optimiser and 30 epochs):

(a) mean pool: anisonet-mp-v1's members 0-2 (and its shipped 5-member ensemble for reference);
(b) sum/V:  --readout sum_volume --loss mse --name sum-volume           -> STUDY_DIR/sum-volume
(c) PSD sum/V + log-eigenvalue loss (``models/anisonet-mp-v2/recipe.yaml``):
            --readout psd_sum_volume --loss mse_log_eig --name psd-logeig -> STUDY_DIR/psd-logeig

Every variant is evaluated on the same validation and test structures; the winner is the
volume-aware variant with the lowest validation score (eps_poly MAE / (a)'s + a_r MAE / (a)'s).
With --ship it becomes models/anisonet-mp-v2 (model.pt, metrics.json, MODEL_CARD.md with
the study) if it also beats (a) on that score. Writes STUDY_DIR/study.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anisoscreen.model.checkpoint import MODEL_FILENAME, load_model, save_model
from anisoscreen.model.training.comparison import ModelVariant, compare_models, summary_rows
from anisoscreen.model.training.model_card import write_model_card
from anisoscreen.screening.descriptors import dimensionality
from anisoscreen.settings import get_settings

BASELINE = "(a) mean pool (v1 members 0-2)"
CANDIDATES = {
    "(b) sum/V, MSE": "sum-volume",
    "(c) PSD sum/V, MSE + log-eigenvalue": "psd-logeig",
}
DESCRIPTION = (
    "Variants trained identically (the same data, cleaning, split, network size (mul 32, "
    "l_max 2), optimiser settings and 30 epochs, best validation epoch kept; seeds 0, 1 and 2) "
    "and differing only in the read-out and the loss: (a) the v1 mean pool, (b) eps = I + "
    "(N v0 / V) mean_i alpha_i with a linear 0e+2e alpha_i per atom, (c) the same with "
    "alpha_i = exp(M_i) (positive definite, so eps - I is too) trained with the irreps MSE "
    "plus 10 x the MSE of the log-eigenvalues. The winner is chosen on the validation split "
    "alone (eps_poly MAE and a_r MAE, each relative to (a)); test numbers played no part. "
    "Reproduce: `python studies/v2_study.py --ship` after the training commands in its "
    "docstring."
)


def score(row: dict, baseline: dict) -> float:
    """Validation score relative to the baseline (2.0 = as good as the baseline)."""
    return row["val_eps_poly"] / baseline["val_eps_poly"] + row["val_ar"] / baseline["val_ar"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study-dir", default="runs/v2-study", type=Path)
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--name", default="anisonet-mp-v2")
    parser.add_argument("--version", default="2.0.0")
    args = parser.parse_args()

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    variants = [
        ModelVariant(BASELINE, "anisonet-mp-v1", members=[0, 1, 2]),
        ModelVariant("v1 shipped (5 members)", "anisonet-mp-v1"),
    ]
    for label, folder in CANDIDATES.items():
        path = args.study_dir / folder / MODEL_FILENAME
        if path.is_file():
            variants.append(ModelVariant(label, path))
    comparison = compare_models(variants, data, dimensionality=dimensionality)
    rows = summary_rows(comparison)
    by_label = {row["label"]: row for row in rows}
    baseline = by_label[BASELINE]
    contenders = [row for row in rows if row["label"] in CANDIDATES]
    winner = min(contenders, key=lambda row: score(row, baseline)) if contenders else None
    study = {
        "description": DESCRIPTION,
        "rows": rows,
        "scores": {row["label"]: score(row, baseline) for row in rows},
        "winner": winner["label"] if winner else None,
        "slice_n": sum(comparison[BASELINE]["ensemble"][s]["n"] for s in ("validation", "test")),
        "comparison": comparison,
    }
    args.study_dir.mkdir(parents=True, exist_ok=True)
    (args.study_dir / "study.json").write_text(json.dumps(study, indent=1))
    for row in rows:
        print(
            f"{row['label']:45s} score {study['scores'][row['label']]:.3f}  "
            f"val {row['val_eps_poly']:.3f}/{row['val_ar']:.3f}  "
            f"test {row['test_eps_poly']:.3f}/{row['test_ar']:.3f}  "
            f"2D {row['twod_eps_poly']}  tail {row['tail_eps_poly']:.3f}  "
            f"dilution {row['dilution_eps_zz_40']:.2f} {row['dilution_ratio']}"
        )
    if not args.ship or winner is None:
        return 0
    if score(winner, baseline) >= 2.0:
        print(f"{winner['label']} does not beat {BASELINE} on validation: nothing shipped")
        return 0
    folder = args.study_dir / CANDIDATES[winner["label"]]
    trained = load_model(folder / MODEL_FILENAME)
    metadata = json.loads((folder / "metrics.json").read_text())
    metadata["readout_study"] = {k: v for k, v in study.items() if k != "comparison"}
    metadata["metrics"]["validation"] = comparison[winner["label"]]["ensemble"]["validation"]
    out = Path("models") / args.name
    out.mkdir(parents=True, exist_ok=True)
    states = [net.state_dict() for net in trained.networks]
    save_model(out / MODEL_FILENAME, trained.config, states, args.name, args.version, metadata)
    (out / "metrics.json").write_text(json.dumps(metadata, indent=2))
    write_model_card(out / "MODEL_CARD.md", args.name, args.version, trained.config, metadata)
    print(f"shipped {winner['label']} as {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

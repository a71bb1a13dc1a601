r"""Model v3 study: laminate read-out, exfoliation augmentation, band gap input, 8 members.

    python studies/v3_study.py --v3 runs/anisonet-mp-v3/model.pt [--ship]

Training (two workers, one core each; resumable, ~7 min a member on an idle 2-core machine),
with the recipe ``models/anisonet-mp-v3/recipe.yaml`` (mul 32, l_max 2, the
``psd_laminate_volume`` read-out, ``mse_log_eig`` loss, the band gap as input with dropout
0.25, exfoliation by 2, 4, 8, 12 and 16 A with 2 copies per epoch, 30 epochs, patience 30,
seeds 0-7)::

    for s in 0 1 2 3 4 5 6 7; do OMP_NUM_THREADS=1 anisoscreen train \
        --config models/anisonet-mp-v3/recipe.yaml --output-dir runs --seed $s; done
    anisoscreen train --config models/anisonet-mp-v3/recipe.yaml --output-dir runs

(the last call, with the recipe's eight seeds, finds every member finished and writes
``runs/anisonet-mp-v3/model.pt`` with the spread calibration fitted on validation). This
script then compares, on the same validation and test structures and their exfoliated copies:

- ``anisonet-mp-v2`` as shipped;
- v2 with the post-hoc laminate correction (its tensors re-mixed with each structure's vacuum,
  :func:`anisoscreen.model.training.evaluate.apply_posthoc_laminate`): the baseline to beat;
- v3.

It also runs the laminate test (MoS2, hBN and MoTe2 layers at c = 12-60 A) on v2 and v3.
v3 is made the default only if it wins on validation (eps_poly MAE / v2's + a_r MAE / v2's
below 2, on the validation split), and, with ``--previous``, the same score against the v3
release it would replace. With ``--ship`` the v3 file is staged with float16 weights (half the
size; evaluated as shipped) and, if it wins, written to ``models/anisonet-mp-v3`` with
``metrics.json`` holding this study and a model card. Results: ``studies/results/v3.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anisoscreen.model.checkpoint import MODEL_FILENAME, load_model, save_model
from anisoscreen.model.nn.graph import structure_to_graph
from anisoscreen.model.training.comparison import LAMINATE_LAYERS
from anisoscreen.model.training.evaluate import evaluate_model, predict_irreps, summary
from anisoscreen.model.training.model_card import write_model_card
from anisoscreen.screening.descriptors import dimensionality
from anisoscreen.settings import get_settings
from anisoscreen.tensor import irreps_to_tensor

LAMINATE_HEIGHTS = (12.0, 15.0, 20.0, 30.0, 40.0, 60.0)
"""Cell heights (A) of the laminate test; constancy is required between 20 and 60 A."""
LAMINATE_TOLERANCE = 0.05


def relative_spread(values: np.ndarray) -> float:
    """(max - min) / |mean| of a series."""
    return float((values.max() - values.min()) / abs(values.mean()))


def laminate_test(model: str) -> dict[str, Any]:
    """(eps_par - 1) c and (1 - 1/eps_perp) c of three layers at growing vacuum."""
    loaded = load_model(model)
    out: dict[str, Any] = {}
    for name, build in LAMINATE_LAYERS.items():
        graphs = [structure_to_graph(build(c), allow_isolated=True) for c in LAMINATE_HEIGHTS]
        eps = irreps_to_tensor(predict_irreps(loaded.networks, graphs).mean(axis=0))
        heights = np.array(LAMINATE_HEIGHTS)
        in_plane = (eps[:, 0, 0] - 1.0) * heights
        normal = (1.0 - 1.0 / eps[:, 2, 2]) * heights
        window = heights >= 20.0

        out[name] = {
            "heights": list(LAMINATE_HEIGHTS),
            "in_plane_2d": in_plane.round(4).tolist(),
            "normal_2d": normal.round(4).tolist(),
            "eps_in_plane": eps[:, 0, 0].round(4).tolist(),
            "eps_normal": eps[:, 2, 2].round(4).tolist(),
            "in_plane_spread_20_60": relative_spread(in_plane[window]),
            "normal_spread_20_60": relative_spread(normal[window]),
        }
        out[name]["passes"] = bool(
            out[name]["in_plane_spread_20_60"] <= LAMINATE_TOLERANCE
            and out[name]["normal_spread_20_60"] <= LAMINATE_TOLERANCE
        )
    return out


def evaluate_all(model: str, data: Path, posthoc: bool = False) -> dict[str, Any]:
    """Validation and test evaluations (with slices and the exfoliated slice) of a model."""
    return {
        subset: summary(
            evaluate_model(
                model,
                data,
                subset=subset,
                device="cpu",
                dimensionality=dimensionality,
                posthoc_laminate=posthoc,
            )
        )
        for subset in ("validation", "test")
    }


def score(candidate: dict[str, Any], baseline: dict[str, Any]) -> float:
    """Validation score relative to the baseline (2.0 = as good as the baseline)."""
    c, b = candidate["validation"]["metrics"], baseline["validation"]["metrics"]
    return (
        c["eps_poly_mae"] / b["eps_poly_mae"]
        + c["anisotropy_ratio_mae"] / b["anisotropy_ratio_mae"]
    )


def ship(source: Path, target_dir: Path) -> Path:
    """Copy a model file with float16 weights (metadata unchanged)."""
    loaded = load_model(source)
    target_dir.mkdir(parents=True, exist_ok=True)
    return save_model(
        target_dir / MODEL_FILENAME,
        loaded.config,
        [net.state_dict() for net in loaded.networks],
        loaded.name,
        loaded.version,
        loaded.metadata,
        storage_dtype=torch.float16,
    )


def main() -> int:
    """Run the study; with ``--ship`` write models/anisonet-mp-v3."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--v3", type=Path, default=Path("runs/v3") / MODEL_FILENAME)
    parser.add_argument("--baseline", default="anisonet-mp-v2")
    parser.add_argument("--ship", action="store_true")
    parser.add_argument(
        "--previous",
        default=None,
        help="the v3 release it must also beat on validation to be shipped (e.g. anisonet-mp-v3)",
    )
    parser.add_argument("--output", type=Path, default=Path("studies/results/v3.json"))
    args = parser.parse_args()
    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"

    study: dict[str, Any] = {}
    if args.previous:  # before anything is shipped over it
        study["previous"] = evaluate_all(args.previous, data)
        study["previous_model"] = study["previous"]["validation"]["model"]
    v3_path = args.v3
    if args.ship:  # evaluated as shipped: float16 weights, staged beside the trained file
        v3_path = ship(args.v3, args.v3.parent / "float16")
        print(f"wrote {v3_path} (float16 weights)", flush=True)
    study |= {
        "v2": evaluate_all(args.baseline, data),
        "v2_posthoc": evaluate_all(args.baseline, data, posthoc=True),
        "v3": evaluate_all(str(v3_path), data),
        "laminate_test": {"v2": laminate_test(args.baseline), "v3": laminate_test(str(v3_path))},
    }
    study["validation_score_v3_vs_v2"] = score(study["v3"], study["v2"])
    study["v3_wins_on_validation"] = study["validation_score_v3_vs_v2"] < 2.0
    if args.previous:
        study["validation_score_vs_previous"] = score(study["v3"], study["previous"])
        study["v3_wins_on_validation"] &= study["validation_score_vs_previous"] < 2.0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(study, indent=1))
    scores = ("validation_score_v3_vs_v2", "validation_score_vs_previous", "v3_wins_on_validation")
    print(json.dumps({k: study[k] for k in scores if k in study}), flush=True)
    if args.ship and study["v3_wins_on_validation"]:
        loaded = load_model(v3_path)
        metadata = {**loaded.metadata, "v3_study": study}
        folder = Path("models") / "anisonet-mp-v3"
        save_model(
            folder / MODEL_FILENAME,
            loaded.config,
            [net.state_dict() for net in loaded.networks],
            loaded.name,
            loaded.version,
            metadata,
            storage_dtype=torch.float16,
        )
        (folder / "metrics.json").write_text(json.dumps(metadata, indent=2))
        write_model_card(
            folder / "MODEL_CARD.md", loaded.name, loaded.version, loaded.config, metadata
        )
        print(f"wrote {folder}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

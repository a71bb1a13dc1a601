"""Do Born effective charges help as an auxiliary target of the ionic model? (issue #14)

Train one ionic member exactly as ``anisonet-mp-ionic-v1``'s seed 0 (same data, cleaning,
split 42, seed 0, 30 epochs, hyper-parameters) plus the auxiliary Born-charge loss, resumably
(re-running the same command resumes)::

    OMP_NUM_THREADS=1 nohup nice -n 5 anisoscreen train \\
        --config models/anisonet-mp-ionic-v1/recipe.yaml --name ionic-born --seed 0 \\
        --output-dir runs --born-weight 10 > runs/ionic-born-seed0.log 2>&1 &

then compare it with ionic-v1's seed-0 member::

    python studies/born_aux_study.py --born-dir runs/ionic-born \\
        [--baseline-checkpoint runs/ionic-v1/train-seed0.ckpt] \\
        [--output runs/ionic-born/study.json]

The report holds (1) the per-epoch validation loss (the main ionic loss only, which also
picks the best epoch in both runs) of both runs up to their common epoch, read from the
resumable training checkpoints; and, once ``<born-dir>/model.pt`` exists, (2) validation and
test MAE_ten, eps_poly MAE, a_r MAE and component MAE of eps0 for the Born-aux member and
ionic-v1's member 0 (seed 0), and (3) the Born head's own MAE (e) on the test entries with
DFPT Born charges, next to a per-element mean Born tensor of the training entries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from _study_io import save_study

from anisoscreen.model.checkpoint import MODEL_FILENAME, load_model
from anisoscreen.model.training.born_metrics import born_charge_metrics
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.model.training.evaluate import evaluate_model
from anisoscreen.model.training.train import load_training_checkpoint, prepare_graphs
from anisoscreen.settings import get_settings

METRIC_KEYS = ("tensor_mae", "eps_poly_mae", "anisotropy_ratio_mae", "component_mae")


def history(checkpoint: Path) -> list[dict[str, float]]:
    """The per-epoch records of a resumable training checkpoint."""
    return list(load_training_checkpoint(checkpoint)["state"]["history"])


def born_head_errors(model_dir: Path, data: Path) -> dict[str, Any]:
    """MAE (e) of the Born head on the test entries with Born charges, and a reference.

    The reference predicts, for every site, the mean Born tensor of its element over the
    training entries with charges (zero for elements without any): the package's
    :func:`~anisoscreen.model.training.born_metrics.born_charge_metrics`, on the first member.
    """
    loaded = load_model(model_dir / MODEL_FILENAME)
    entries, _ = clean_entries(load_entries(data))
    entries = entries[: loaded.metadata.get("n_entries") or len(entries)]
    split = random_split(len(entries), loaded.metadata.get("split_seed", 42))
    test = [entries[i] for i in split["test"]]
    train = [entries[i] for i in split["train"]]
    return born_charge_metrics(
        loaded.networks[:1],
        prepare_graphs(test, loaded.config.cutoff),
        [e.born for e in test],
        [e.structure for e in test],
        [e.structure for e in train],
        [e.born for e in train],
        torch.device("cpu"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--born-dir", default="runs/ionic-born", type=Path)
    parser.add_argument("--baseline", default="anisonet-mp-ionic-v1", help="member 0 is used")
    parser.add_argument("--baseline-checkpoint", default=None, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, type=Path)
    parser.add_argument(
        "--reuse-baseline",
        default=None,
        type=Path,
        help="a previous study.json whose baseline metrics to reuse (same baseline model)",
    )
    args = parser.parse_args()
    reused = json.loads(args.reuse_baseline.read_text())["metrics"] if args.reuse_baseline else {}
    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    study: dict[str, Any] = {"born_dir": str(args.born_dir), "baseline": args.baseline}

    born_history = history(args.born_dir / "train-seed0.ckpt")
    curves: dict[str, Any] = {"born_aux": born_history}
    if args.baseline_checkpoint:
        base_history = history(args.baseline_checkpoint)
        common = min(len(born_history), len(base_history))
        curves["baseline"] = base_history
        print(f"validation loss (main ionic loss) per epoch, first {common} epochs:")
        print("epoch  baseline  born-aux  born-val")
        for old, new in zip(base_history[:common], born_history[:common], strict=True):
            print(
                f"{old['epoch']:5d}  {old['val_loss']:8.4f}  {new['val_loss']:8.4f}  "
                f"{new.get('val_born_loss', float('nan')):8.4f}"
            )
        for label, rows in (("baseline", base_history), ("born_aux", born_history)):
            best = min(rows[:common], key=lambda r: r["val_loss"])
            print(f"{label}: best val {best['val_loss']:.4f} at epoch {best['epoch']}")
    study["curves"] = curves

    if (args.born_dir / MODEL_FILENAME).is_file():
        study["metrics"] = {}
        for subset in ("validation", "test"):
            for label, model, members in (
                ("baseline_seed0", args.baseline, [0]),
                ("born_aux_seed0", str(args.born_dir / MODEL_FILENAME), None),
            ):
                if label == "baseline_seed0" and subset in reused:
                    row = reused[subset][label]
                else:
                    result = evaluate_model(
                        model, data, subset=subset, device=args.device, members=members
                    )
                    row = {key: result["metrics"][key] for key in (*METRIC_KEYS, "n")}
                study["metrics"].setdefault(subset, {})[label] = row
                print(
                    f"{subset:10s} {label:15s} MAE_ten {row['tensor_mae']:.3f}  "
                    f"eps_poly MAE {row['eps_poly_mae']:.3f}  "
                    f"component MAE {row['component_mae']:.3f}  (n={row['n']})",
                    flush=True,
                )
        study["born_head_test"] = born_head_errors(args.born_dir, data)
        print(f"Born head on test entries with charges: {study['born_head_test']}")
    else:
        print(f"{args.born_dir / MODEL_FILENAME} not written yet (training unfinished)")
    save_study(study, args.output or args.born_dir / "study.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

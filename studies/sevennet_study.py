"""Pretrained SevenNet-0 features vs element-only inputs (issue 18, item 2), on validation.

    python studies/sevennet_study.py train --seeds 0 [1 2] [--time-limit S]
    python studies/sevennet_study.py compare

``train`` trains networks exactly like the members of the shipped ``anisonet-mp-v2``
(same data, cleaning, split seed 42, mul 32, l_max 2, read-out ``psd_sum_volume``, loss
``mse_log_eig`` with weight 10, 30 epochs, best validation epoch kept), differing only in the
input: SevenNet-0 node features of orders 0, 1 and 2 (``--atom-features sevennet-0``,
:mod:`anisoscreen.model.pretrained_features`) next to the element embedding. The features of
the whole data set are computed once and cached (``<data_dir>/cache/atom_features``).
Training checkpoints every epoch and resumes when run again; asking for seeds ``0 1`` after
``0`` reuses the finished seed-0 network. The model goes to ``STUDY_DIR/sevennet``.

``compare`` evaluates both on the same validation and test structures, member by member (the
shipped v2 members are seeds 0, 1, 2, trained identically) and as ensembles of the seeds
both have, with the error slices and the MoS2 dilution series, and writes
``STUDY_DIR/study.json``. The verdict is taken on validation alone (eps_poly and a_r MAE
relative to the element-only members of the same seeds); test numbers are reported, never
used to choose. Nothing is shipped: the default model stays ``anisonet-mp-v2``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from anisoscreen.model.checkpoint import MODEL_FILENAME, load_model
from anisoscreen.model.nn.network import ModelConfig
from anisoscreen.model.training.comparison import ModelVariant, compare_models, summary_rows
from anisoscreen.model.training.pipeline import epoch_printer, train_model
from anisoscreen.model.training.train import TrainConfig
from anisoscreen.screening.descriptors import dimensionality
from anisoscreen.settings import get_settings

FEATURES = "sevennet-0"
ELEMENT_ONLY = "v2 element-only"
WITH_FEATURES = "v2 + SevenNet-0 features"


def data_path() -> Path:
    return get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"


def train(
    study_dir: Path,
    seeds: list[int],
    time_limit: float | None,
    max_entries: int | None = None,
    max_epochs: int | None = None,
) -> int:
    """Train (or resume) the SevenNet-feature networks of ``seeds`` like v2's members."""
    shipped = load_model("anisonet-mp-v2")
    settings = TrainConfig(**shipped.metadata["train_config"])
    settings.time_limit = time_limit
    if max_epochs is not None:
        settings.max_epochs = max_epochs
    config = shipped.config
    model_config = ModelConfig(
        mul=config.mul,
        lmax=config.lmax,
        num_layers=config.num_layers,
        embed_dim=config.embed_dim,
        cutoff=config.cutoff,
        num_basis=config.num_basis,
        radial_hidden=config.radial_hidden,
        output=config.output,
        readout=config.readout,
        atom_features=FEATURES,
    )
    result = train_model(
        data_path(),
        study_dir / "sevennet",
        "anisonet-mp-v2-sevennet",
        model_config,
        settings,
        seeds=tuple(seeds),
        split_seed=shipped.metadata["split_seed"],
        max_entries=max_entries,
        progress=epoch_printer(),
        version="2.1.0-study",
    )
    print(json.dumps({k: v for k, v in result.items() if k != "test"}, indent=1))
    return 0


def compare(study_dir: Path) -> int:
    """Member-by-member and ensemble comparison on validation and test; writes study.json."""
    path = study_dir / "sevennet" / MODEL_FILENAME
    trained = load_model(path)
    seeds = list(trained.metadata["seeds"])
    shipped = load_model("anisonet-mp-v2")
    shipped_seeds = list(shipped.metadata["seeds"])
    common = [s for s in seeds if s in shipped_seeds]
    variants = [
        ModelVariant(ELEMENT_ONLY, "anisonet-mp-v2", [shipped_seeds.index(s) for s in common]),
        ModelVariant(WITH_FEATURES, path, [seeds.index(s) for s in common]),
    ]
    comparison = compare_models(
        variants, data_path(), shipped.metadata["split_seed"], dimensionality=dimensionality
    )
    rows = summary_rows(comparison)
    per_seed = []
    for k, seed in enumerate(common):
        entry = {"seed": seed}
        for label in (ELEMENT_ONLY, WITH_FEATURES):
            member = comparison[label]["members"][k]
            for subset in ("validation", "test"):
                entry[f"{label} {subset}"] = {
                    "eps_poly_mae": member[subset]["eps_poly_mae"],
                    "anisotropy_ratio_mae": member[subset]["anisotropy_ratio_mae"],
                }
        per_seed.append(entry)
    member_val = {
        label: np.array(
            [
                [m["validation"]["eps_poly_mae"], m["validation"]["anisotropy_ratio_mae"]]
                for m in comparison[label]["members"]
            ]
        )
        for label in (ELEMENT_ONLY, WITH_FEATURES)
    }
    ratio = member_val[WITH_FEATURES].mean(axis=0) / member_val[ELEMENT_ONLY].mean(axis=0)
    study = {
        "seeds": common,
        "per_seed": per_seed,
        "rows": rows,
        "validation_ratio_eps_poly_ar": ratio.tolist(),
        "wins_on_validation": bool(ratio.sum() < 2.0),
        "dilution": {label: comparison[label]["dilution"] for label in comparison},
        "comparison": comparison,
    }
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "study.json").write_text(json.dumps(study, indent=1))
    print("seed | variant | validation eps_poly / a_r MAE | test eps_poly / a_r MAE")
    for entry in per_seed:
        for label in (ELEMENT_ONLY, WITH_FEATURES):
            val, test = entry[f"{label} validation"], entry[f"{label} test"]
            print(
                f"{entry['seed']} | {label} | {val['eps_poly_mae']:.3f} / "
                f"{val['anisotropy_ratio_mae']:.3f} | {test['eps_poly_mae']:.3f} / "
                f"{test['anisotropy_ratio_mae']:.3f}"
            )
    for row in rows:
        print(
            f"ensemble of seeds {common} | {row['label']} | {row['val_eps_poly']:.3f} / "
            f"{row['val_ar']:.3f} | {row['test_eps_poly']:.3f} / {row['test_ar']:.3f} | "
            f"2D {row['twod_eps_poly']} | tail {row['tail_eps_poly']:.3f} | dilution eps_zz(40) "
            f"{row['dilution_eps_zz_40']:.2f}, ratio {row['dilution_ratio']:.3f}"
        )
    verdict = "wins" if study["wins_on_validation"] else "does not win"
    print(
        f"SevenNet features {verdict} on validation (member-mean MAE ratio eps_poly "
        f"{ratio[0]:.3f}, a_r {ratio[1]:.3f})"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study-dir", default="runs/sevennet-study", type=Path)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    train_parser.add_argument("--time-limit", type=float, default=None)
    train_parser.add_argument("--max-epochs", type=int, default=None, help="smoke runs only")
    train_parser.add_argument("--max-entries", type=int, default=None, help="smoke runs only")
    commands.add_parser("compare")
    args = parser.parse_args()
    if args.command == "train":
        return train(args.study_dir, args.seeds, args.time_limit, args.max_entries, args.max_epochs)
    return compare(args.study_dir)


if __name__ == "__main__":
    sys.exit(main())

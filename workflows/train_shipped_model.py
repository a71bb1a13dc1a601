"""Train the shipped model (resumable): python workflows/train_shipped_model.py [--time-limit S].

Writes models/<name>/ (model.pt, metrics.json, MODEL_CARD.md, train-seed*.ckpt).
Re-running resumes where the last run stopped. ``--target ionic`` (or ``total``) trains the
ionic (static) tensor with that target's read-out and loss unless given
(:data:`anisoscreen.model.training.pipeline.TARGET_RECIPES`: ``psd_square_volume`` and
``huber_log1p_eig``).

The ionic ensemble (3 seeds, 30 epochs, the electronic members' size), one process per seed
writing resumable ``train-seed<k>.ckpt`` files into one folder, then one call that finds all
three finished and writes the 3-member model::

    for s in 0 1 2; do OMP_NUM_THREADS=1 nohup python workflows/train_shipped_model.py \
        --name anisonet-mp-ionic-v1 --target ionic --mul 32 --lmax 2 --max-epochs 30 \
        --patience 30 --seeds $s --output-dir runs/ionic-study/psd-square \
        > runs/ionic-study/psd-square-seed$s.log 2>&1 & done; wait
    python workflows/train_shipped_model.py --name anisonet-mp-ionic-v1 --target ionic \
        --mul 32 --lmax 2 --max-epochs 30 --patience 30 --seeds 0 1 2 \
        --output-dir runs/ionic-study/psd-square

The Born-charge auxiliary target (issue #14): the same for one seed with
``--born-weight W --output-dir runs/ionic-born`` (see ``workflows/ionic_study.py``).

The plain ``0e+2e`` head for comparison: the same with ``--readout sum_volume`` (no identity
for the ionic target) and ``--output-dir runs/ionic-study/plain-head``.
"""

from __future__ import annotations

import argparse
import sys

from anisoscreen.model.nn.network import ModelConfig
from anisoscreen.model.training.pipeline import epoch_printer, target_recipe, train_model
from anisoscreen.model.training.train import TrainConfig
from anisoscreen.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="anisonet-mp-v1")
    parser.add_argument("--mul", type=int, default=32)
    parser.add_argument("--lmax", type=int, default=2)
    parser.add_argument("--atom-features", default=None, help="e.g. chgnet-0.3.0")
    parser.add_argument("--target", default="electronic", choices=["electronic", "ionic", "total"])
    parser.add_argument(
        "--readout",
        default=None,
        choices=[
            "mean",
            "sum_volume",
            "psd_sum_volume",
            "psd_laminate_volume",
            "psd_square_volume",
            "psd_outer_volume",
        ],
        help="default per target: mean (electronic), psd_square_volume (ionic, total)",
    )
    parser.add_argument("--outer-channels", type=int, default=4)
    parser.add_argument(
        "--loss",
        default=None,
        choices=["mse", "mse_log_eig", "huber_log1p_eig"],
        help="default per target: mse (electronic), huber_log1p_eig (ionic, total)",
    )
    parser.add_argument("--huber-delta", type=float, default=1.0)
    parser.add_argument("--log-eig-weight", type=float, default=10.0)
    parser.add_argument("--output-dir", default=None, help="default: models/NAME")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    parser.add_argument("--lr-decay", type=float, default=TrainConfig.lr_decay)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--max-epochs", type=int, default=TrainConfig.max_epochs)
    parser.add_argument("--patience", type=int, default=TrainConfig.patience)
    parser.add_argument("--time-limit", type=float, default=None)
    parser.add_argument(
        "--gap-input", action="store_true", help="take the band gap as a global input"
    )
    parser.add_argument(
        "--gap-dropout", type=float, default=0.0, help="probability of hiding a gap in training"
    )
    parser.add_argument(
        "--exfoliate",
        type=float,
        nargs="*",
        default=[],
        help="gap openings (A) of the exfoliation augmentation, e.g. 2 4 8 12 16",
    )
    parser.add_argument("--exfoliated-per-epoch", type=int, default=2)
    parser.add_argument("--max-entries", type=int, default=None)
    parser.add_argument(
        "--born-weight",
        type=float,
        default=0.0,
        help="weight of the auxiliary Born-charge loss (0 = off; adds a Born head)",
    )
    args = parser.parse_args()

    settings = get_settings()
    data = settings.shared / "data" / "mp_dielectric_tensors.json.gz"
    recipe = target_recipe(args.target, readout=args.readout, loss=args.loss)

    result = train_model(
        data,
        args.output_dir or f"models/{args.name}",
        args.name,
        ModelConfig(
            mul=args.mul,
            lmax=args.lmax,
            atom_features=args.atom_features,
            readout=recipe["readout"],
            outer_channels=args.outer_channels,
            target=args.target,
            gap_input=args.gap_input,
        ),
        TrainConfig(
            lr=args.lr,
            weight_decay=args.weight_decay,
            lr_decay=args.lr_decay,
            batch_size=args.batch_size,
            max_epochs=args.max_epochs,
            patience=args.patience,
            time_limit=args.time_limit,
            loss=recipe["loss"],
            log_eig_weight=args.log_eig_weight,
            huber_delta=args.huber_delta,
            born_weight=args.born_weight,
            gap_dropout=args.gap_dropout,
            exfoliation_deltas=tuple(args.exfoliate),
            exfoliated_per_epoch=args.exfoliated_per_epoch,
        ),
        seeds=tuple(args.seeds),
        max_entries=args.max_entries,
        progress=epoch_printer(),
        version=args.version,
    )
    print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

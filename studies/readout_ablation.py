"""Equivariant vs scalar read-out, the paper's ablation (resumable).

    python studies/readout_ablation.py [--model anisonet-mp-v1] [--member 0]

Trains one network with the scalar ``6x0e`` read-out (six independent Cartesian components,
no output equivariance) with the same data, split, hyper-parameters and seed as one member of
the shipped equivariant ensemble, evaluates both on the validation and test splits and writes
the comparison into the shipped model's ``metrics.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from anisoscreen.model.checkpoint import load_model, resolve_model_path
from anisoscreen.model.training.evaluate import evaluate_model
from anisoscreen.model.training.model_card import write_model_card
from anisoscreen.model.training.pipeline import train_model
from anisoscreen.model.training.train import TrainConfig
from anisoscreen.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="anisonet-mp-v1", help="shipped equivariant model")
    parser.add_argument("--member", type=int, default=0, help="ensemble member to compare")
    parser.add_argument("--name", default="anisonet-scalar-ablation")
    parser.add_argument("--max-epochs", type=int, default=30, help="as the shipped members")
    parser.add_argument("--time-limit", type=float, default=None)
    args = parser.parse_args()

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    model_path = resolve_model_path(args.model)
    shipped = load_model(model_path)
    seed = shipped.metadata["seeds"][args.member]
    train_config = replace(
        TrainConfig(**shipped.metadata["train_config"]),
        max_epochs=args.max_epochs,
        time_limit=args.time_limit,
    )
    result = train_model(
        data,
        model_path.parent.parent / args.name,
        args.name,
        replace(shipped.config, output="scalar"),
        train_config,
        seeds=(seed,),
        split_seed=shipped.metadata["split_seed"],
        progress=lambda _, rec: print(f"epoch {rec['epoch']} val {rec['val_loss']:.4f}"),
    )
    if not result.get("finished"):
        print("stopped by the time limit; run again to resume", flush=True)
        return 0

    scalar_path = model_path.parent.parent / args.name / "model.pt"
    rows = []
    for label, path, members in (
        (f"equivariant 0e+2e (member {args.member}, seed {seed})", model_path, [args.member]),
        (f"scalar 6x0e (seed {seed})", scalar_path, None),
    ):
        rows.append(
            {
                "label": label,
                **{
                    subset: evaluate_model(str(path), data, subset=subset, members=members)[
                        "metrics"
                    ]
                    for subset in ("validation", "test")
                },
            }
        )
    ablation = {
        "description": (
            "Single networks trained identically (data, split, hyper-parameters, seed, "
            f"{args.max_epochs} epochs, best validation epoch kept); only the read-out differs. "
            f"Reproduce: `python studies/readout_ablation.py --member {args.member}`."
        ),
        "rows": rows,
    }
    metrics_path = model_path.parent / "metrics.json"
    metadata = json.loads(metrics_path.read_text())
    metadata["readout_ablation"] = ablation
    metrics_path.write_text(json.dumps(metadata, indent=2))
    write_model_card(
        model_path.parent / "MODEL_CARD.md",
        shipped.name,
        shipped.version,
        shipped.config,
        metadata,
    )
    for row in rows:
        for subset in ("validation", "test"):
            m = row[subset]
            print(
                f"{row['label']}, {subset}: eps_poly MAE {m['eps_poly_mae']:.3f}, "
                f"a_r MAE {m['anisotropy_ratio_mae']:.3f}, component MAE {m['component_mae']:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

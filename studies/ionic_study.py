"""Evaluate the ionic read-out variants and the electronic + ionic model set on one split.

    python studies/ionic_study.py [--electronic anisonet-mp-v2]
        [--variant psd-square=runs/ionic-study/psd-square]
        [--variant plain-head=runs/ionic-study/plain-head] [--subset test]
        [--output runs/ionic-study/study.json]

Each variant is an ionic model folder trained by ``anisoscreen train --config
models/anisonet-mp-ionic-v1/recipe.yaml --name psd-square --output-dir runs/ionic-study``
(``psd_square_volume``: PSD by construction; with ``--readout sum_volume --name plain-head``:
the plain ``0e+2e`` head). For each variant it reports the test metrics of eps0 (MAE_ten, eps_poly
MAE, per crystal system), the fraction of predicted eps0 tensors with a negative eigenvalue
(below -1e-6) and, with the electronic model, the metrics of eps_total = eps_inf + eps0
against DFPT's static tensor. DTNet's MAE_ten for comparison: electronic 0.368, ionic 1.677,
total 1.911 (about 6,650 MP entries).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _study_io import save_study

from anisoscreen.model.training.evaluate import evaluate_model_set
from anisoscreen.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--electronic", default="anisonet-mp-v2")
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        help="LABEL=MODEL_DIR (repeat); default: psd-square and plain-head under runs/ionic-study",
    )
    parser.add_argument("--subset", default="test")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default="runs/ionic-study/study.json", type=Path)
    args = parser.parse_args()
    variants = args.variant or [
        "psd-square=runs/ionic-study/psd-square",
        "plain-head=runs/ionic-study/plain-head",
    ]
    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    study: dict = {"electronic_model": args.electronic, "subset": args.subset, "variants": {}}
    for item in variants:
        label, folder = item.split("=", 1)
        results = evaluate_model_set(
            args.electronic, folder, data, subset=args.subset, device=args.device
        )
        ionic_eigenvalues = np.linalg.eigvalsh(results["ionic"]["predicted"])
        row = {
            "model_dir": folder,
            "non_psd_fraction": float(np.mean(ionic_eigenvalues[:, 0] < -1e-6)),
            **{key: results[key]["metrics"] for key in ("electronic", "ionic", "total")},
        }
        study["variants"][label] = row
        print(
            f"{label}: MAE_ten electronic {row['electronic']['tensor_mae']:.3f}, "
            f"ionic {row['ionic']['tensor_mae']:.3f}, total {row['total']['tensor_mae']:.3f}; "
            f"ionic eps_poly MAE {row['ionic']['eps_poly_mae']:.3f}; "
            f"non-PSD eps0 {row['non_psd_fraction']:.1%} (n={row['ionic']['n']})",
            flush=True,
        )
    save_study(study, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

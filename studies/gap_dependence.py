"""How much a gap-taking model leans on the band gap: validation eps_poly MAE per gap bin, with
the gap given and with it hidden.

    python studies/gap_dependence.py [--model anisonet-mp-v3] \
        [--output studies/results/gap_dependence.json]

The model predicts the validation split twice, once with each entry's band gap and once with
every gap hidden (``nan``, what the network sees for a structure without one); the eps_poly
MAE of the ensemble mean is reported per PBE gap bin (eV).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from _gap_split import GAP_BINS, GapSubset
from _study_io import save_study

from anisoscreen.model.checkpoint import load_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="anisonet-mp-v3")
    parser.add_argument("--output", type=Path, default=Path("studies/results/gap_dependence.json"))
    args = parser.parse_args()

    loaded = load_model(args.model, device="cpu")
    validation = GapSubset.of("validation", loaded.networks[0].config.cutoff)
    reference, gaps = validation.reference, validation.gaps
    with_gap = validation.eps_poly(loaded.networks)
    for graph in validation.graphs:
        graph.band_gap = math.nan
    without_gap = validation.eps_poly(loaded.networks)
    bins = []
    for low, high in GAP_BINS:
        inside = (gaps >= low) & (gaps < high)
        given = float(np.abs(with_gap - reference)[inside].mean())
        hidden = float(np.abs(without_gap - reference)[inside].mean())
        bins.append(
            {
                "gap_ev": [low, high],
                "n": int(inside.sum()),
                "eps_poly_mae_with_gap": given,
                "eps_poly_mae_gap_hidden": hidden,
            }
        )
        print(
            f"{low:4.1f}-{high:4.1f} eV  n {int(inside.sum()):3d}  "
            f"with gap {given:.3f}  hidden {hidden:.3f}"
        )
    save_study({"model": args.model, "split": "validation", "bins": bins}, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

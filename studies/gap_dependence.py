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
from _study_io import save_study

from anisoscreen import tensor as tmath
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.model.training.evaluate import predict_irreps
from anisoscreen.model.training.train import prepare_graphs
from anisoscreen.settings import get_settings

GAP_BINS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 20.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="anisonet-mp-v3")
    parser.add_argument("--output", type=Path, default=Path("studies/results/gap_dependence.json"))
    args = parser.parse_args()

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    entries, _ = clean_entries(load_entries(data))
    validation = [entries[i] for i in random_split(len(entries), 42)["validation"]]
    loaded = load_model(args.model, device="cpu")
    graphs = prepare_graphs(validation, loaded.networks[0].config.cutoff, None, None)
    reference = np.array(
        [tmath.irreps_to_tensor(e.target_irreps("electronic")).trace() / 3 for e in validation]
    )
    gaps = np.array([math.nan if e.band_gap is None else e.band_gap for e in validation])

    def eps_poly() -> np.ndarray:
        mean = predict_irreps(loaded.networks, graphs, "cpu").mean(axis=0)
        return np.trace(tmath.irreps_to_tensor(mean), axis1=1, axis2=2) / 3

    with_gap = eps_poly()
    for graph in graphs:
        graph.band_gap = math.nan
    without_gap = eps_poly()
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

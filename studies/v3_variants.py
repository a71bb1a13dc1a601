r"""Training variants of model v3, two members each, compared on validation only.

    python studies/v3_variants.py --reference anisonet-mp-v3 \
        --variant scratch=runs/v3-variants/scratch/anisonet-mp-v3/model.pt ...

Each variant is a recipe of ``studies/recipes/v3-variants/`` trained for seeds 0 and 1
(``anisoscreen train --config <recipe> --output-dir runs/v3-variants/<label> --seed 0``, the
same with ``--seed 1``, one process per core, then once without ``--seed`` to assemble): the
v3 recipe with one change each (see ``docs/models/history.md``). Every variant is
scored on the validation split, the 0.5-1 eV gap bin of it and its exfoliated copies, against
the *same two members* (seeds 0 and 1) of the reference ensemble, so that ensemble size does
not enter the comparison. Only validation numbers are reported (the cached member predictions
of ``studies/v3_calibration.py``, in ``--cache/<label>/members.npz``, also hold the test
split, which this study leaves alone). Results:
``studies/results/v3_variants.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _study_io import save_study
from v3_calibration import member_predictions

from anisoscreen.model.spread_calibration import spread_quantities
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.settings import get_settings

SMALL_GAP = (0.5, 1.0)
"""The gap bin (eV) whose eps_poly error the issue asks to halve."""


def ensemble_errors(members: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """eps_poly and a_r MAE of the members' mean tensor."""
    quantities = spread_quantities(members, reference)
    return {
        "eps_poly_mae": float(quantities["eps_poly"]["error"].mean()),
        "anisotropy_ratio_mae": float(quantities["anisotropy_ratio"]["error"].mean()),
    }


def validation_gaps(split_seed: int = 42) -> np.ndarray:
    """PBE band gaps (eV; nan where unknown) of the validation entries, in split order."""
    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    entries, _ = clean_entries(load_entries(data))
    indices = random_split(len(entries), split_seed)["validation"]
    gaps = [entries[i].band_gap for i in indices]
    return np.array([np.nan if gap is None else gap for gap in gaps], dtype=float)


def scores(arrays: dict[str, np.ndarray], members: list[int], gaps: np.ndarray) -> dict[str, Any]:
    """Validation, small-gap and exfoliated-validation errors of the chosen members."""
    small = (gaps >= SMALL_GAP[0]) & (gaps < SMALL_GAP[1])
    validation = arrays["validation_members"][members]
    reference = arrays["validation_reference"]
    return {
        "validation": ensemble_errors(validation, reference),
        "validation_gap_0.5_1": {
            "n": int(small.sum()),
            **ensemble_errors(validation[:, small], reference[small]),
        },
        "validation_exfoliated": ensemble_errors(
            arrays["validation_exfoliated_members"][members],
            arrays["validation_exfoliated_reference"],
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference", default="anisonet-mp-v3")
    parser.add_argument("--variant", action="append", default=[], help="label=model path")
    parser.add_argument("--members", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cache", type=Path, default=Path("runs/v3-variants"))
    parser.add_argument("--output", type=Path, default=Path("studies/results/v3_variants.json"))
    args = parser.parse_args()
    gaps = validation_gaps()
    reference = member_predictions(args.reference, args.cache / "reference")
    study: dict[str, Any] = {
        "reference": args.reference,
        "members": args.members,
        "reference_same_members": scores(reference, args.members, gaps),
        "variants": {},
    }
    for item in args.variant:
        label, _, path = item.partition("=")
        arrays = member_predictions(path, args.cache / label)
        every = list(range(arrays["validation_members"].shape[0]))
        study["variants"][label] = {"model": path, **scores(arrays, every, gaps)}
    rows = {"reference (same members)": study["reference_same_members"]} | study["variants"]
    for label, row in rows.items():
        cells = "  ".join(
            f"{name} {row[name]['eps_poly_mae']:.4f}/{row[name]['anisotropy_ratio_mae']:.4f}"
            for name in ("validation", "validation_gap_0.5_1", "validation_exfoliated")
        )
        print(f"{label:28s} {cells}")
    save_study(study, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

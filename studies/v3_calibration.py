r"""Spread calibration of model v3: one factor against one per regime, fitted on validation.

    python studies/v3_calibration.py [--model anisonet-mp-v3] [--cache runs/v3-calibration]
        [--write-metadata]

Predicts every member on the validation and test splits and on their exfoliated slices
(cached as ``members.npz``), then fits on the validation split with its exfoliated copies:

- ``one_factor`` (the v3.0 release): one factor per quantity, the 95 % quantile of
  ``|error| / (2 sigma)`` with every exfoliated copy counted as a structure;
- ``by_regime`` (:func:`anisoscreen.model.spread_calibration.fit_spread_calibration`): one
  split-conformal factor for dense crystals and one for cells with vacuum, each exfoliated
  entry counted once (its worst copy).

It reports the +-2 sigma coverage on the four sets; the target is 90-98 % on the test split
and on the test exfoliated slice, for eps_poly and a_r. Results:
``studies/results/v3_calibration.json``. ``--write-metadata`` stores the ``by_regime``
calibration in the model file (``models/anisonet-mp-v3/model.pt``, version 3.1.0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from anisoscreen.model.atom_features import data_set_cache
from anisoscreen.model.checkpoint import atomic_torch_save, load_model, resolve_model_path
from anisoscreen.model.spread_calibration import (
    COVERAGE_TARGET,
    SpreadCalibration,
    fit_spread_calibration,
    spread_quantities,
)
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.model.training.evaluate import predict_irreps
from anisoscreen.model.training.exfoliated import (
    EXFOLIATION_DELTAS,
    exfoliated_copies,
    exfoliated_graphs,
)
from anisoscreen.model.training.train import prepare_graphs, resolve_device
from anisoscreen.settings import get_settings
from anisoscreen.tensor import irreps_to_tensor

SETS = ("validation", "validation_exfoliated", "test", "test_exfoliated")


def member_predictions(model: str, cache: Path) -> dict[str, np.ndarray]:
    """Member tensors, references and vacuum flags of the four sets (cached)."""
    path = cache / "members.npz"
    if path.exists():
        return dict(np.load(path))
    device = resolve_device("cpu")
    loaded = load_model(model, device=device)
    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    entries, _ = clean_entries(load_entries(data))
    entries = entries[: loaded.metadata.get("n_entries") or len(entries)]
    split = random_split(len(entries), loaded.metadata.get("split_seed", 42))
    deltas = loaded.metadata.get("train_config", {}).get("exfoliation_deltas") or (
        EXFOLIATION_DELTAS
    )
    out: dict[str, np.ndarray] = {}
    features = loaded.config.atom_features
    feature_cache = data_set_cache(features, data) if features else None
    for subset in ("validation", "test"):
        chosen = [entries[i] for i in split[subset]]
        graphs = prepare_graphs(chosen, loaded.config.cutoff, features, feature_cache)
        out[f"{subset}_members"] = irreps_to_tensor(predict_irreps(loaded.networks, graphs, device))
        out[f"{subset}_reference"] = np.stack([e.eps_electronic for e in chosen])
        out[f"{subset}_vacuum"] = np.array([g.has_vacuum for g in graphs])
        out[f"{subset}_groups"] = np.asarray(split[subset])
        indices = split[subset].tolist()
        copies = [c for g in exfoliated_copies(entries, indices, deltas).values() for c in g]
        graphs = exfoliated_graphs(copies, entries, loaded.config.cutoff, features, feature_cache)
        name = f"{subset}_exfoliated"
        out[f"{name}_members"] = irreps_to_tensor(predict_irreps(loaded.networks, graphs, device))
        out[f"{name}_reference"] = np.stack([c.eps_electronic for c in copies])
        out[f"{name}_vacuum"] = np.array([g.has_vacuum for g in graphs])
        out[f"{name}_groups"] = np.array([c.parent for c in copies])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out


def report(sigma: np.ndarray, error: np.ndarray) -> dict[str, float]:
    """Coverage of +-2 sigma and the Spearman correlation of sigma with |error|."""
    return {
        "n": int(len(error)),
        "coverage_2sigma": float(np.mean(error <= 2.0 * sigma)),
        "spearman_spread_vs_error": float(spearmanr(sigma, error).statistic),
        "mean_interval_halfwidth": float(np.mean(2.0 * sigma)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="anisonet-mp-v3")
    parser.add_argument("--cache", type=Path, default=Path("runs/v3-calibration"))
    parser.add_argument("--output", type=Path, default=Path("studies/results/v3_calibration.json"))
    parser.add_argument("--write-metadata", action="store_true")
    args = parser.parse_args()

    arrays = member_predictions(args.model, args.cache)
    fit_sets = ("validation", "validation_exfoliated")
    fit_members = np.concatenate([arrays[f"{s}_members"] for s in fit_sets], axis=1)
    fit_reference = np.concatenate([arrays[f"{s}_reference"] for s in fit_sets])
    fit_vacuum = np.concatenate([arrays[f"{s}_vacuum"] for s in fit_sets])
    fit_groups = np.concatenate([arrays[f"{s}_groups"] for s in fit_sets])
    fitted = {
        "one_factor": {
            name: {"scale": float(np.quantile(q["error"] / (2.0 * q["sigma"]), COVERAGE_TARGET))}
            for name, q in spread_quantities(fit_members, fit_reference).items()
        },
        "by_regime": fit_spread_calibration(fit_members, fit_reference, fit_vacuum, fit_groups),
    }
    result: dict[str, Any] = {"model": args.model, "fitted": fitted, "coverage": {}}
    for method, scales in fitted.items():
        per_quantity: dict[str, Any] = {}
        for name in SETS:
            quantities = spread_quantities(arrays[f"{name}_members"], arrays[f"{name}_reference"])
            for quantity, q in quantities.items():
                sigma = SpreadCalibration.from_dict(scales[quantity]).apply(
                    q["sigma"], arrays[f"{name}_vacuum"]
                )
                per_quantity.setdefault(quantity, {})[name] = report(sigma, q["error"])
        result["coverage"][method] = per_quantity
    result["coverage_target_met"] = {
        method: {
            f"{quantity} {name}": 0.90 <= cov[quantity][name]["coverage_2sigma"] <= 0.98
            for quantity in cov
            for name in ("test", "test_exfoliated")
        }
        for method, cov in result["coverage"].items()
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for method, cov in result["coverage"].items():
        for quantity, sets in cov.items():
            cells = "  ".join(f"{n} {sets[n]['coverage_2sigma']:.3f}" for n in SETS)
            print(f"{method:10s} {quantity:16s} {cells}")
    if args.write_metadata:
        write_metadata(args.model, fitted["by_regime"])
    return 0


def write_metadata(model: str, spread_calibration: dict[str, Any]) -> None:
    """Store ``spread_calibration`` in the model file, weights unchanged, as version 3.1.0."""
    path = resolve_model_path(model)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["metadata"]["spread_calibration"] = spread_calibration
    payload["version"] = "3.1.0"
    atomic_torch_save(payload, path)
    print(f"wrote the calibration into {path}")


if __name__ == "__main__":
    sys.exit(main())

"""Starting models for the out-of-distribution campaign benchmark, trained without a regime.

    python benchmarks/ood_start.py REGIME [--members 3] [--max-epochs N] [--seed K]
        [--output runs/ood]

Trains the shipped v3 recipe (``models/anisonet-mp-v3/recipe.yaml``) through the package's
training pipeline with every entry of ``REGIME`` (:mod:`anisoscreen.model.training.regimes`),
and so its exfoliated copies, removed from training and validation. For CPU: ``--members``
seeds (3 instead of the recipe's 8) and ``--max-epochs`` (the recipe's own by default).
Resumable: run again to continue. ``--seed K`` trains that member only (one process per
core, as ``anisoscreen train --seed``); the run without it then assembles the finished
members. The regime's member indices are cached in ``<output>/regime-<REGIME>.json``; the
model goes to ``<output>/start-<REGIME>/model.pt``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from anisoscreen.model.checkpoint import shipped_models
from anisoscreen.model.training.dataset import clean_entries, load_entries
from anisoscreen.model.training.pipeline import epoch_printer, train_model
from anisoscreen.model.training.recipe import RECIPE_FILENAME, load_recipe
from anisoscreen.model.training.regimes import REGIMES, regime_indices
from anisoscreen.settings import get_settings

RECIPE = "anisonet-mp-v3"
DATA_FILE = "mp_dielectric_tensors.json.gz"


def data_path() -> Path:
    """The shared training data set."""
    return get_settings().shared / "data" / DATA_FILE


def cached_regime(regime: str, output: Path) -> list[int]:
    """Indices of the cleaned entries in ``regime`` (computed once, cached under ``output``)."""
    path = output / f"regime-{regime}.json"
    if path.exists():
        return json.loads(path.read_text())["indices"]
    entries, _ = clean_entries(load_entries(data_path()))
    indices = [int(i) for i in regime_indices(entries, regime)]
    output.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "regime": regime,
                "n_entries": len(entries),
                "indices": indices,
                "material_ids": [entries[i].material_id for i in indices],
            }  # fmt: skip
        )
    )
    return indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime", choices=sorted(REGIMES))
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="train this member only")
    parser.add_argument("--output", type=Path, default=Path("runs/ood"))
    args = parser.parse_args()

    exclude = cached_regime(args.regime, args.output)
    print(f"{args.regime}: {len(exclude)} entries left out of training and validation", flush=True)
    recipe = load_recipe(shipped_models() / RECIPE / RECIPE_FILENAME)
    result = train_model(
        data_path(),
        args.output / f"start-{args.regime}",
        f"anisonet-ood-{args.regime}",
        recipe.model,
        replace(recipe.train, max_epochs=args.max_epochs or recipe.train.max_epochs),
        seeds=(args.seed,) if args.seed is not None else tuple(recipe.seeds[: args.members]),
        split_seed=recipe.split_seed,
        device="cpu",
        progress=epoch_printer(),
        version="0.0.0",
        exclude=exclude,
    )
    print(json.dumps(result.get("test", result), indent=2), flush=True)


if __name__ == "__main__":
    main()

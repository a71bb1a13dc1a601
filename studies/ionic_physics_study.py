"""Issue 28, route (b): eps0 from Born charges x SevenNet Gamma force constants, test split.

    # 1. force constants of the test structures (resumable cache, one JSON line each)
    python studies/ionic_physics_study.py phi [--potential sevennet-0] [--limit N]
        [--cache runs/ionic-physics/phi-sevennet-0.jsonl]
    # 2. metrics: (a) the direct model, (b) physics with the DFPT Born charges
    python studies/ionic_physics_study.py evaluate
        [--output studies/results/ionic-physics.json]

The test split is the one ``anisoscreen evaluate`` uses for the shipped ionic model (its
recorded split seed and entry count, the same cleaning). ``phi`` visits the test structures
in a seeded random order, so a cache cut short is a random subset; ``evaluate`` scores the
structures it holds (and says how many). Totals add the shipped electronic model's eps_inf.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen.settings import DEFAULT_IONIC_MODEL, DEFAULT_MODEL, get_settings

DEFAULT_CACHE = Path("runs/ionic-physics/phi-sevennet-0.jsonl")


def _test_entries(ionic_model: str) -> list[Any]:
    """The ionic model's test entries, as :func:`evaluate_model` rebuilds them."""
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    metadata = load_model(ionic_model).metadata
    entries, _ = clean_entries(load_entries(data))
    entries = entries[: metadata.get("n_entries") or len(entries)]
    split = random_split(len(entries), metadata.get("split_seed", 42))
    return [entries[i] for i in split["test"]]


def phi(args: argparse.Namespace) -> int:
    """Compute and cache the Gamma force constants of the test structures."""
    import torch

    from anisoscreen.ionic_physics.force_constants import gamma_force_constants
    from anisoscreen.ionic_physics.potentials import SevenNetPotential

    torch.set_num_threads(1)
    entries = _test_entries(args.ionic_model)
    order = np.random.default_rng(0).permutation(len(entries))
    # route (b) is scored with the DFPT Born charges: only entries that carry them
    order = np.array([i for i in order if entries[i].born is not None], dtype=int)
    if args.limit:
        order = order[: args.limit]
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.cache.exists():
        done = {json.loads(line)["index"] for line in args.cache.read_text().splitlines()}
    potential = SevenNetPotential(args.potential)
    with args.cache.open("a") as handle:
        for k, index in enumerate(order):
            if int(index) in done:
                continue
            entry = entries[index]
            record: dict[str, Any] = {"index": int(index), "material_id": entry.material_id}
            record["nsites"] = len(entry.structure)
            try:
                fc = gamma_force_constants(entry.structure, potential)
                record.update(
                    phi=fc.phi.round(6).tolist(),
                    residual_forces=fc.residual_forces.round(6).tolist(),
                    raw_asymmetry=fc.raw_asymmetry,
                    n_displacements=fc.n_displacements,
                    seconds=fc.seconds,
                )
            except Exception as exc:  # an element the potential lacks
                record["error"] = str(exc)
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            print(
                f"{time.strftime('%H:%M:%S')} {k + 1}/{len(order)} {entry.material_id} "
                f"n={record['nsites']} {record.get('seconds', float('nan')):.1f}s",
                flush=True,
            )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_phi = sub.add_parser("phi")
    p_phi.add_argument("--potential", default="sevennet-0")
    p_phi.add_argument("--limit", type=int, default=0)
    p_phi.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p_phi.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    p_eval = sub.add_parser("evaluate")
    p_eval.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p_eval.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    p_eval.add_argument("--electronic-model", default=DEFAULT_MODEL)
    p_eval.add_argument("--output", type=Path, default=Path("studies/results/ionic-physics.json"))
    args = parser.parse_args()
    return phi(args) if args.command == "phi" else evaluate(args)


def evaluate(args: argparse.Namespace) -> int:
    raise NotImplementedError


if __name__ == "__main__":
    sys.exit(main())

"""Issue 28: Gamma force constants at the potential's own minimum instead of the MP geometry.

    python studies/phi_relaxation.py run [--split validation] [--limit 60] [--shard 0/2]
        [--cache runs/ionic-physics/phi-relaxation-validation.jsonl]
    python studies/phi_relaxation.py summary --cache ... [--output
        studies/results/phi-relaxation.json]

Phonon workflows with machine-learnt potentials relax the atoms before the Hessian; the refine
stage takes it at the DFT geometry, where the potential's residual forces are not zero. For
each cell with DFPT Born charges and fewer than 40 sites (the seeded order of
``ionic_physics_study.py phi``), ``run`` computes route (b), DFPT charges x SevenNet-l3i5 force
constants, twice: at the MP geometry (the refine stage's way) and after relaxing the atoms
at a fixed cell (so the volume of the formula is DFT's) with ASE's BFGS to 0.005 eV/A,
keeping the space group (``FixSymmetry``), through ``sevenn``'s own calculator. ``summary``
scores both against DFPT eps0 (MAE_ten) and lists the cells that change most. DFPT charges
keep the Born model out of it, so the difference is the force constants' alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from _splits import split_entries
from _study_io import save_study

from anisoscreen.model.training.error_slices import tensor_errors
from anisoscreen.settings import DEFAULT_IONIC_MODEL

POTENTIAL, CHECKPOINT = "sevennet-l3i5", "7net-l3i5"
FMAX, MAX_STEPS = 0.005, 300


def _relaxed(structure: Any, calculator: Any) -> tuple[Any, int, bool]:
    """``(structure with relaxed atoms, BFGS steps, converged)`` at the cell of ``structure``."""
    from ase.constraints import FixSymmetry
    from ase.optimize import BFGS
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    atoms.set_constraint(FixSymmetry(atoms, symprec=1e-3))
    optimizer = BFGS(atoms, logfile=None, maxstep=0.1)
    converged = bool(optimizer.run(fmax=FMAX, steps=MAX_STEPS))
    relaxed = Structure(
        structure.lattice, structure.species, atoms.get_positions(), coords_are_cartesian=True
    )
    return relaxed, int(optimizer.nsteps), converged


def run(args: argparse.Namespace) -> int:
    """Route (b) with DFPT charges at the MP geometry and relaxed, one JSON line a cell."""
    import torch
    from sevenn.calculator import SevenNetCalculator

    from anisoscreen.ionic_physics.force_constants import gamma_force_constants
    from anisoscreen.ionic_physics.potentials import SevenNetPotential
    from anisoscreen.ionic_physics.route import physics_ionic

    torch.set_num_threads(1)
    entries = split_entries(DEFAULT_IONIC_MODEL, args.split)
    order = np.random.default_rng(0).permutation(len(entries))
    order = [i for i in order if entries[i].born is not None and len(entries[i].structure) < 40]
    shard, shards = (int(k) for k in args.shard.split("/"))
    order = order[: args.limit][shard::shards]
    done = set()
    if args.cache.exists():
        done = {json.loads(line)["index"] for line in args.cache.read_text().splitlines()}
    potential = SevenNetPotential(POTENTIAL)
    calculator = SevenNetCalculator(CHECKPOINT)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    with args.cache.open("a") as handle:
        for index in order:
            if int(index) in done:
                continue
            entry = entries[index]
            record: dict[str, Any] = {"index": int(index), "material_id": entry.material_id}
            try:
                at_mp = physics_ionic(
                    entry.structure, entry.born, gamma_force_constants(entry.structure, potential)
                )
                start = time.perf_counter()
                relaxed, steps, converged = _relaxed(entry.structure, calculator)
                relax_seconds = time.perf_counter() - start
                at_minimum = physics_ionic(
                    relaxed, entry.born, gamma_force_constants(relaxed, potential)
                )
                moved = relaxed.cart_coords - entry.structure.cart_coords
                record.update(
                    nsites=len(entry.structure),
                    reference=np.asarray(entry.eps_ionic).tolist(),
                    mp=at_mp.eps_ionic.tolist(),
                    relaxed=at_minimum.eps_ionic.tolist(),
                    flags_mp=at_mp.flags,
                    flags_relaxed=at_minimum.flags,
                    residual_force_mp=at_mp.max_residual_force,
                    lowest_thz_mp=float(at_mp.modes.frequencies_thz.min()),
                    lowest_thz_relaxed=float(at_minimum.modes.frequencies_thz.min()),
                    steps=steps,
                    converged=converged,
                    max_displacement=float(np.abs(moved).max()),  # largest Cartesian component, A
                    relax_seconds=relax_seconds,
                )
            except Exception as exc:  # an element the potential lacks
                record["error"] = str(exc)
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            print(entry.material_id, record.get("steps"), record.get("error", ""), flush=True)
    return 0


def summary(args: argparse.Namespace) -> int:
    """MAE_ten of both geometries on the cells computed, the cells that change most."""
    rows = [json.loads(line) for cache in args.cache for line in cache.read_text().splitlines()]
    rows = [r for r in rows if "error" not in r]
    reference = np.array([r["reference"] for r in rows])
    errors = {
        key: tensor_errors(np.array([r[key] for r in rows]), reference) for key in ("mp", "relaxed")
    }
    clean = np.array([not r["flags_mp"] and not r["flags_relaxed"] for r in rows])
    change = errors["relaxed"] - errors["mp"]
    study = {
        "what": "route (b), DFPT charges x SevenNet-l3i5 Phi, at the MP geometry and after a "
        "fixed-cell, symmetry-kept relaxation of the atoms (BFGS, fmax 0.005 eV/A)",
        "n": len(rows),
        "ionic_mae_ten": {k: float(v.mean()) for k, v in errors.items()},
        "ionic_mae_ten_unflagged": {k: float(v[clean].mean()) for k, v in errors.items()},
        "cells_better_worse_same": [
            int((change < -0.01).sum()),
            int((change > 0.01).sum()),
            int((np.abs(change) <= 0.01).sum()),
        ],
        "median_steps": float(np.median([r["steps"] for r in rows])),
        "max_displacement_median": float(np.median([r["max_displacement"] for r in rows])),
        "relax_seconds_mean": float(np.mean([r["relax_seconds"] for r in rows])),
        "largest_changes": [
            {
                "material_id": rows[i]["material_id"],
                "reference_poly": float(np.trace(rows[i]["reference"]) / 3),
                "mp_poly": float(np.trace(rows[i]["mp"]) / 3),
                "relaxed_poly": float(np.trace(rows[i]["relaxed"]) / 3),
                "max_displacement": rows[i]["max_displacement"],
            }
            for i in np.argsort(-np.abs(change))[:5]
        ],
    }
    save_study(study, args.output)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--split", choices=["validation", "test"], default="validation")
    p_run.add_argument("--limit", type=int, default=60)
    p_run.add_argument("--shard", default="0/1")
    p_run.add_argument(
        "--cache", type=Path, default=Path("runs/ionic-physics/phi-relaxation-validation.jsonl")
    )
    p_sum = sub.add_parser("summary")
    p_sum.add_argument("--cache", type=Path, nargs="+", required=True)
    p_sum.add_argument("--output", type=Path, default=Path("studies/results/phi-relaxation.json"))
    args = parser.parse_args()
    return {"run": run, "summary": summary}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())

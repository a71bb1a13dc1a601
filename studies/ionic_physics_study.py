"""Issue 28, route (b): eps0 from Born charges x SevenNet Gamma force constants, test split.

    # 1. force constants of the test structures (resumable cache, one JSON line each)
    python studies/ionic_physics_study.py phi [--potential sevennet-0] [--limit N] [--max-sites 40]
        [--cache runs/ionic-physics/phi-sevennet-0.jsonl]
    # 2. the shipped direct models' eps0 and eps_inf on the same split (route (a))
    python studies/ionic_physics_study.py direct
    # 3. metrics: (a) direct, (b) physics with DFPT and with nominal Born charges, and with
    #    a Born-charge model's predicted charges (route (b) proper) when --born-model is given
    python studies/ionic_physics_study.py evaluate [--born-model anisonet-mp-born]
        [--output studies/results/ionic-physics.json] [--cache ... --potential sevennet-l3i5]

The test split is the one ``anisoscreen evaluate`` uses for the shipped ionic model (its
recorded split seed and entry count, the same cleaning). ``phi`` visits the test structures
that carry DFPT Born charges and have fewer than 40 sites (the screen's limit) in a seeded
random order, so a cache cut short is a random subset; ``evaluate`` scores the structures it
holds (and says how many). Totals add the shipped electronic model's eps_inf.
``phi --split train --all-entries --cache runs/ionic-physics/phi-train.jsonl`` fills the
training split's force constants, the input a hybrid network would learn from (about 5
CPU-s a structure: run it niced in the background; it resumes where it stopped). Two
processes: ``--shard 0/2`` and ``--shard 1/2``, each with its own ``--cache`` and the other's
(and any earlier run's) as ``--also-done``.

Route (c) beyond the constant blend of ``hybrid``: ``priors`` writes the physics eps0 of every
cached cell of the three splits (predicted charges, unflagged cells) as the ``.npz`` a hybrid
network trains on (``ModelConfig.physics_prior``, recipes in ``studies/recipes/ionic-hybrid/``);
``gate`` fits a per-cell weight of the physics value on validation and scores it on test
(``docs/ionic-physics.md`` has the commands and the results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _blend import WEIGHT_GRID, best_weights, blend
from _splits import split_entries
from _study_io import save_study

from anisoscreen.ionic_physics.route import physics_ionic
from anisoscreen.settings import DEFAULT_IONIC_MODEL, DEFAULT_MODEL, get_settings

DEFAULT_CACHE = Path("runs/ionic-physics/phi-sevennet-0.jsonl")
DEFAULT_DIRECT = Path("runs/ionic-physics/direct.npz")


def phi(args: argparse.Namespace) -> int:
    """Compute and cache the Gamma force constants of the test structures."""
    import torch

    from anisoscreen.ionic_physics.force_constants import gamma_force_constants
    from anisoscreen.ionic_physics.potentials import SevenNetPotential

    torch.set_num_threads(1)
    entries = split_entries(args.ionic_model, args.split)
    order = np.random.default_rng(0).permutation(len(entries))
    # route (b) is scored with the DFPT Born charges: only entries that carry them, unless
    # the predicted charges are to be scored on every entry (--all-entries)
    if not args.all_entries:
        order = np.array([i for i in order if entries[i].born is not None], dtype=int)
    # the screen's own size limit (run-screen --max-sites 40): larger cells are left out
    order = np.array([i for i in order if len(entries[i].structure) < args.max_sites], dtype=int)
    if args.limit:
        order = order[: args.limit]
    shard, shards = (int(k) for k in args.shard.split("/"))
    order = order[shard::shards]  # shard k of n: every n-th structure from the k-th
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    for cache in (args.cache, *args.also_done):  # this shard's cache, then the others'
        if cache.exists():
            done |= {json.loads(line)["index"] for line in cache.read_text().splitlines()}
    potential = SevenNetPotential(args.potential)
    with args.cache.open("a") as handle:
        for k, index in enumerate(order):
            if int(index) in done:
                continue
            entry = entries[index]
            record: dict[str, Any] = {"index": int(index), "material_id": entry.material_id}
            record["nsites"] = len(entry.structure)
            cpu = time.process_time()
            try:
                fc = gamma_force_constants(entry.structure, potential)
                record.update(
                    phi=fc.phi.round(6).tolist(),
                    residual_forces=fc.residual_forces.round(6).tolist(),
                    raw_asymmetry=fc.raw_asymmetry,
                    n_displacements=fc.n_displacements,
                    seconds=fc.seconds,
                    cpu_seconds=time.process_time() - cpu,
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


def _direct_tensors(model: str, entries: list[Any]) -> tuple[np.ndarray, str]:
    """Ensemble-mean tensors (n, 3, 3) of a shipped model, as ``evaluate_model`` predicts."""
    from anisoscreen import tensor as tmath
    from anisoscreen.model.atom_features import data_set_cache
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.evaluate import predict_irreps
    from anisoscreen.model.training.train import prepare_graphs

    data = get_settings().shared / "data" / "mp_dielectric_tensors.json.gz"
    loaded = load_model(model, device="cpu")
    features = loaded.config.atom_features
    cache = data_set_cache(features, data) if features else None
    graphs = prepare_graphs(entries, loaded.config.cutoff, features, cache)
    per_member = tmath.irreps_to_tensor(predict_irreps(loaded.networks, graphs, "cpu"))
    return per_member.mean(axis=0), f"{loaded.name} {loaded.version}"


def direct(args: argparse.Namespace) -> int:
    """Route (a): the shipped direct models' eps_inf and eps0 on the test split (cached)."""
    import torch

    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.error_slices import tensor_mae

    torch.set_num_threads(1)
    meta = [load_model(m).metadata for m in (args.ionic_model, args.electronic_model)]
    if {(m.get("split_seed"), m.get("n_entries")) for m in meta} != {
        (meta[0].get("split_seed"), meta[0].get("n_entries"))
    }:
        raise SystemExit("the electronic and ionic models were not trained on the same split")
    entries = split_entries(args.ionic_model, args.split)
    ionic, ionic_name = _direct_tensors(args.ionic_model, entries)
    electronic, electronic_name = _direct_tensors(args.electronic_model, entries)
    args.direct.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.direct,
        ionic=ionic,
        electronic=electronic,
        models=np.array([ionic_name, electronic_name]),
    )
    reference = np.stack([e.tensor("ionic") for e in entries])
    print(f"-> {args.direct}: ionic MAE_ten {tensor_mae(ionic, reference):.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_phi = sub.add_parser("phi")
    p_phi.add_argument("--potential", default="sevennet-0")
    p_phi.add_argument("--limit", type=int, default=0)
    p_phi.add_argument("--max-sites", type=int, default=40, help="keep cells with fewer sites")
    p_phi.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p_phi.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    p_phi.add_argument("--split", choices=["train", "test", "validation"], default="test")
    p_phi.add_argument(
        "--shard",
        default="0/1",
        help="K/N: only every N-th structure from the K-th (one process and --cache per shard)",
    )
    p_phi.add_argument(
        "--also-done",
        type=Path,
        nargs="*",
        default=[],
        help="caches of other shards or runs: their structures are skipped",
    )
    p_phi.add_argument(
        "--all-entries",
        action="store_true",
        help="also the entries without DFPT Born charges (for predicted charges)",
    )
    p_direct = sub.add_parser("direct")
    p_direct.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    p_direct.add_argument("--electronic-model", default=DEFAULT_MODEL)
    p_direct.add_argument("--direct", type=Path, default=DEFAULT_DIRECT)
    p_direct.add_argument("--split", choices=["test", "validation"], default="test")
    p_eval = sub.add_parser("evaluate")
    p_eval.add_argument("--direct", type=Path, default=DEFAULT_DIRECT)
    p_eval.add_argument("--max-sites", type=int, default=40, help="score cells with fewer sites")
    p_eval.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p_eval.add_argument(
        "--potential", default="sevennet-0", help="the potential of the cache's force constants"
    )
    p_eval.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    p_eval.add_argument("--electronic-model", default=DEFAULT_MODEL)
    p_eval.add_argument("--output", type=Path, default=Path("studies/results/ionic-physics.json"))
    p_eval.add_argument(
        "--born-model",
        default=None,
        help="also route (b) with this Born-charge model's predicted charges (name or path)",
    )
    p_hybrid = sub.add_parser("hybrid")
    p_hybrid.add_argument("--born-model", required=True)
    p_hybrid.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    p_hybrid.add_argument("--cache", type=Path, nargs="+", default=[DEFAULT_CACHE])
    p_hybrid.add_argument("--direct", type=Path, default=DEFAULT_DIRECT)
    p_hybrid.add_argument(
        "--validation-cache",
        type=Path,
        nargs="+",
        default=[Path("runs/ionic-physics/phi-validation.jsonl")],
    )
    p_hybrid.add_argument(
        "--potential", default="sevennet-0", help="the potential of the caches' force constants"
    )
    p_hybrid.add_argument(
        "--validation-direct", type=Path, default=Path("runs/ionic-physics/direct-validation.npz")
    )
    p_hybrid.add_argument(
        "--output", type=Path, default=Path("studies/results/ionic-physics-hybrid.json")
    )
    p_priors = sub.add_parser("priors")
    p_priors.add_argument("--born-model", required=True)
    p_priors.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    for split_name in ("train", "validation", "test"):
        p_priors.add_argument(f"--{split_name}-caches", type=Path, nargs="+", required=True)
    p_priors.add_argument("--output", type=Path, required=True)
    p_gate = sub.add_parser("gate")
    p_gate.add_argument("--born-model", required=True)
    p_gate.add_argument("--ionic-model", default=DEFAULT_IONIC_MODEL)
    p_gate.add_argument("--validation-caches", type=Path, nargs="+", required=True)
    p_gate.add_argument("--test-caches", type=Path, nargs="+", default=[DEFAULT_CACHE])
    p_gate.add_argument("--direct", type=Path, default=DEFAULT_DIRECT)
    p_gate.add_argument(
        "--validation-direct", type=Path, default=Path("runs/ionic-physics/direct-validation.npz")
    )
    p_gate.add_argument(
        "--output", type=Path, default=Path("studies/results/ionic-physics-gate.json")
    )
    args = parser.parse_args()
    commands = {
        "phi": phi,
        "direct": direct,
        "evaluate": evaluate,
        "hybrid": hybrid,
        "priors": priors,
        "gate": gate,
    }
    return commands[args.command](args)


def priors(args: argparse.Namespace) -> int:
    """Physics eps0 of every cached structure of every split, as a hybrid model's input.

    Route (b) with the Born model's predicted charges (the charges a screen has) and the
    cached SevenNet force constants; flagged structures get none. Written as an ``.npz``
    keyed by structure hash (``train.physics_priors`` of a hybrid recipe). The Born model
    was trained on the training split, so its charges there are in-sample (closer to DFPT
    than on validation and test).
    """
    from anisoscreen.model.born_charges import predict_born_charges
    from anisoscreen.schemas import structure_id

    tensors: dict[str, np.ndarray] = {}
    counts: dict[str, dict[str, int]] = {}
    for split_name, caches in (
        ("train", args.train_caches),
        ("validation", args.validation_caches),
        ("test", args.test_caches),
    ):
        entries = split_entries(args.ionic_model, split_name)
        records = _phi_records(caches)
        index = sorted(records)
        structures = [entries[i].structure for i in index]
        charges = predict_born_charges(args.born_model, structures)
        flagged = 0
        for i, structure, z in zip(index, structures, charges, strict=True):
            result = physics_ionic(structure, z, _force_constants(records[i]))
            if result.flags:
                flagged += 1
                continue
            tensors[structure_id(structure)] = result.eps_ionic
        counts[split_name] = {"entries": len(entries), "cached": len(index), "flagged": flagged}
        print(f"{split_name}: {counts[split_name]}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **tensors)
    print(f"{len(tensors)} priors -> {args.output}", flush=True)
    return 0


def _phi_records(caches: list[Path], max_sites: int | None = None) -> dict[int, dict[str, Any]]:
    """The cached force-constant records of several caches by split index (errors left out)."""
    records = {}
    for cache in caches:
        for line in cache.read_text().splitlines():
            record = json.loads(line)
            if "phi" in record and (max_sites is None or record["nsites"] < max_sites):
                records[record["index"]] = record
    return records


def _force_constants(record: dict[str, Any]) -> Any:
    """The cached force constants of one structure."""
    from anisoscreen.ionic_physics.force_constants import ForceConstants

    return ForceConstants(
        phi=np.asarray(record["phi"]),
        raw_asymmetry=record["raw_asymmetry"],
        residual_forces=np.asarray(record["residual_forces"]),
        n_displacements=record["n_displacements"],
        n_operations=0,
        seconds=record["seconds"],
    )


def _predicted_route(
    entries: list[Any],
    caches: list[Path],
    direct_file: Path,
    born_model: str,
    max_sites: int,
    with_dfpt_born_only: bool = True,
) -> dict[str, Any]:
    """Route (b) with a Born model's charges on the cached structures, next to route (a).

    ``with_dfpt_born_only``: only the structures with DFPT Born charges (those the other
    routes are scored on); otherwise every cached one (``born_mae`` is over the former).
    """
    from anisoscreen.ionic_physics.formula import impose_born_asr
    from anisoscreen.model.born_charges import predict_born_charges
    from anisoscreen.model.training.evaluate import crystal_systems

    records = [
        r
        for r in _phi_records(caches, max_sites).values()
        if entries[r["index"]].born is not None or not with_dfpt_born_only
    ]
    index = [r["index"] for r in records]
    charges = predict_born_charges(born_model, [entries[i].structure for i in index])
    results = [
        physics_ionic(entries[r["index"]].structure, z, _force_constants(r))
        for r, z in zip(records, charges, strict=True)
    ]
    direct = np.load(direct_file)
    errors = [
        np.abs(z - impose_born_asr(entries[i].born)).ravel()
        for i, z in zip(index, charges, strict=True)
        if entries[i].born is not None
    ]
    return {
        "index": index,
        "born_mae": float(np.mean(np.concatenate(errors))),
        "physics": np.stack([r.eps_ionic for r in results]),
        "flagged": np.array([bool(r.flags) for r in results]),
        "direct": direct["ionic"][index],
        "electronic": direct["electronic"][index],
        "reference_ionic": np.stack([entries[i].tensor("ionic") for i in index]),
        "reference_total": np.stack([entries[i].tensor("total") for i in index]),
        "systems": crystal_systems([entries[i].structure for i in index]),
    }


def _subset(part: dict[str, Any], keep: list[bool]) -> dict[str, Any]:
    """The rows of a route's cells where ``keep`` is true (per-cell fields only)."""
    mask = np.asarray(keep, dtype=bool)
    subset = {k: v[mask] for k, v in part.items() if isinstance(v, np.ndarray)}
    subset["index"] = [i for i, k in zip(part["index"], mask, strict=True) if k]
    subset["systems"] = [s for s, k in zip(part["systems"], mask, strict=True) if k]
    return subset


def _whole_split(entries: list[Any], cached: dict[str, Any], direct_file: Path) -> dict[str, Any]:
    """A route's rows over every entry of the split: uncached entries keep the direct value.

    Uncached entries are marked flagged, so a blend leaves them at the direct value.
    """
    from anisoscreen.model.training.evaluate import crystal_systems

    direct = np.load(direct_file)
    physics = direct["ionic"].copy()
    flagged = np.ones(len(entries), dtype=bool)
    physics[cached["index"]] = cached["physics"]
    flagged[cached["index"]] = cached["flagged"]
    return {
        "index": list(range(len(entries))),
        "physics": physics,
        "flagged": flagged,
        "direct": direct["ionic"],
        "electronic": direct["electronic"],
        "reference_ionic": np.stack([e.tensor("ionic") for e in entries]),
        "reference_total": np.stack([e.tensor("total") for e in entries]),
        "systems": crystal_systems([e.structure for e in entries]),
    }


def hybrid(args: argparse.Namespace) -> int:
    """(c), as a blend fitted on validation: direct + alpha (physics - direct) where unflagged.

    The physics value is route (b) with the Born model's predicted charges; flagged
    structures keep the direct value. ``alpha`` is chosen on the validation split (ionic
    MAE_ten, a grid of 0.05) and scored on the test split. A second variant weighs the two
    values freely, ``direct_weight direct + alpha physics`` (both on validation): it can
    scale down a physics value that a potential's softened modes inflate. ``--cache`` and
    ``--validation-cache`` take several caches (a split's cells computed in parts).
    """
    from anisoscreen.model.training.error_slices import tensor_mae

    test_entries = split_entries(args.ionic_model)
    rows = {
        "validation": _predicted_route(
            split_entries(args.ionic_model, "validation"),
            args.validation_cache,
            args.validation_direct,
            args.born_model,
            40,
        ),
        # every test cell under 40 sites whose force constants are cached, with or without
        # DFPT charges (phi --all-entries): the predicted charges need none
        "test_all": _predicted_route(
            test_entries, args.cache, args.direct, args.born_model, 40, with_dfpt_born_only=False
        ),
    }
    # the cells with DFPT charges, the ones the other routes are scored on
    rows["test"] = _subset(
        rows["test_all"], [test_entries[i].born is not None for i in rows["test_all"]["index"]]
    )
    rows["test_split"] = _whole_split(test_entries, rows["test_all"], args.direct)

    def blended(
        part: dict[str, Any], alpha: float, direct_weight: float | None = None
    ) -> np.ndarray:
        """``direct + alpha (physics - direct)``, or ``direct_weight direct + alpha physics``."""
        return blend(part["direct"], part["physics"], ~part["flagged"], alpha, direct_weight)

    def validation_mae(alpha: float, direct_weight: float | None = None) -> float:
        part = rows["validation"]
        return float(tensor_mae(blended(part, alpha, direct_weight), part["reference_ionic"]))

    mae_by_alpha = [validation_mae(a) for a in WEIGHT_GRID]
    alpha = float(WEIGHT_GRID[int(np.argmin(mae_by_alpha))])
    # two weights: a physics value scaled down (the potential's softened modes raise eps0)
    # next to a direct one; both chosen on validation
    two_weights = best_weights(validation_mae)
    scored: dict[str, dict[str, Any]] = {}
    for part in ("test", "test_all", "test_split"):
        test = rows[part]
        scored[part] = {"n": len(test["index"])}
        variants = (
            ("direct", 0.0, None),
            ("refine_rule", 1.0, None),
            ("blend", alpha, None),
            ("two_weight_blend", *two_weights),
        )
        for name, value, direct_weight in variants:
            ionic = blended(test, value, direct_weight)
            scored[part][name] = {
                "alpha": value,
                "direct_weight": 1.0 - value if direct_weight is None else direct_weight,
                "ionic_mae_ten": float(tensor_mae(ionic, test["reference_ionic"])),
                "total_mae_ten": float(
                    tensor_mae(ionic + test["electronic"], test["reference_total"])
                ),
            }
            print(f"{part} {name} (alpha {value}): {scored[part][name]}", flush=True)
            high = np.trace(test["reference_ionic"], axis1=1, axis2=2) / 3 > 20
            scored[part][name]["ionic"] = _block(ionic, test["reference_ionic"], test["systems"])
            scored[part][name]["ionic_eps_poly_above_20"] = _block(
                ionic[high],
                test["reference_ionic"][high],
                [s for s, k in zip(test["systems"], high, strict=True) if k],
            )
    study = {
        "born_model": str(args.born_model),
        "potential": args.potential,
        "what": "ionic eps0 = direct + alpha (physics - direct) on unflagged structures, "
        f"physics = {args.potential} force constants x the Born model's charges; alpha fitted "
        "on validation (ionic MAE_ten), scored on test",
        "n_validation": len(rows["validation"]["index"]),
        "n_test": len(rows["test"]["index"]),
        "parts": {
            "test": "the test cells under 40 sites with DFPT Born charges (as in evaluate)",
            "test_all": "every test cell under 40 sites whose force constants are cached",
            "test_split": "the whole test split, as anisoscreen evaluate scores it: the direct "
            "value where no force constants are cached (cells of 40 sites or more) or the "
            "route is flagged",
        },
        "flagged_share": {
            k: float(v["flagged"].mean()) for k, v in rows.items() if k != "test_split"
        },
        "validation_mae_by_alpha": dict(zip(WEIGHT_GRID.tolist(), mae_by_alpha, strict=True)),
        "alpha": alpha,
        "two_weights": {
            "what": "ionic eps0 = direct_weight direct + alpha physics on unflagged structures "
            "(both on a grid of 0.05 in [0, 1], chosen on validation)",
            "alpha": two_weights[0],
            "direct_weight": two_weights[1],
            "validation_mae": validation_mae(*two_weights),
            "validation_mae_of_blend": validation_mae(alpha),
        },
        "test": scored,
    }
    save_study(study, args.output, f"alpha {alpha}; ")
    return 0


GATE_FEATURES = (
    "log1p physics eps0_poly",
    "log1p direct eps0_poly",
    "their difference",
    "log lowest included frequency",
    "largest mode share of eps0",
    "max residual force",
    "log sites",
    "log volume per atom",
    "mean |Z*|",
    "share of modes dropped",
)


def _gate_rows(entries: list[Any], caches: list[Path], direct_file: Path, born: str) -> dict:
    """Direct and physics eps0, reference and gate features of the cached cells under 40 sites."""
    from anisoscreen.model.born_charges import predict_born_charges

    records = _phi_records(caches, max_sites=40)
    index = sorted(records)
    charges = predict_born_charges(born, [entries[i].structure for i in index])
    direct = np.load(direct_file)["ionic"]
    features, physics, unflagged = [], [], []
    for i, z in zip(index, charges, strict=True):
        structure = entries[i].structure
        result = physics_ionic(structure, z, _force_constants(records[i]))
        kept = result.modes.frequencies_thz[result.included]
        share = result.contributions.max() / max(result.contributions.sum(), 1e-9)
        p_poly, d_poly = np.trace(result.eps_ionic) / 3, np.trace(direct[i]) / 3
        features.append(
            [
                np.log1p(p_poly),
                np.log1p(d_poly),
                np.log1p(p_poly) - np.log1p(d_poly),
                np.log(kept.min()) if len(kept) else 0.0,
                share,
                result.max_residual_force,
                np.log(len(structure)),
                np.log(structure.volume / len(structure)),
                float(np.abs(z).mean()),
                result.n_dropped / len(result.modes.omega2),
            ]
        )
        physics.append(result.eps_ionic)
        unflagged.append(not result.flags)
    return {
        "features": np.array(features),
        "physics": np.array(physics),
        "direct": direct[index],
        "reference": np.stack([entries[i].tensor("ionic") for i in index]),
        "unflagged": np.array(unflagged),
    }


def gate(args: argparse.Namespace) -> int:
    """(c) as a learnt gate: direct + w(x) (physics - direct), w a logistic in cell features.

    ``w`` is fitted on validation (mean absolute component error, L2 penalty ``lam``,
    five-fold cross-validation on validation to compare feature sets) and scored on test,
    against the constant weight of ``hybrid``. Flagged cells keep the direct value.
    """
    from scipy.optimize import minimize

    from anisoscreen.model.training.error_slices import tensor_mae

    rows = {
        "validation": _gate_rows(
            split_entries(args.ionic_model, "validation"),
            args.validation_caches,
            args.validation_direct,
            args.born_model,
        ),
        "test": _gate_rows(
            split_entries(args.ionic_model), args.test_caches, args.direct, args.born_model
        ),
    }
    val = rows["validation"]

    def blended(weights: np.ndarray, part: dict, cols: list[int], scale: tuple) -> np.ndarray:
        x = (part["features"][:, cols] - scale[0]) / scale[1]
        w = np.where(part["unflagged"], 1 / (1 + np.exp(-(x @ weights[1:] + weights[0]))), 0.0)
        return part["direct"] + w[:, None, None] * (part["physics"] - part["direct"])

    def fitted(part: dict, cols: list[int], lam: float, scale: tuple) -> np.ndarray:
        def loss(weights: np.ndarray) -> float:
            error = np.abs(blended(weights, part, cols, scale) - part["reference"]).mean()
            return float(error + lam * np.sum(weights[1:] ** 2))

        start = np.zeros(1 + len(cols))
        start[0] = np.log(0.45 / 0.55)
        return minimize(loss, start, method="Powell", options={"maxiter": 20000}).x

    def subset(part: dict, mask: np.ndarray) -> dict:
        return {k: v[mask] for k, v in part.items()}

    folds = np.random.default_rng(0).permutation(len(val["reference"])) % 5
    results = []
    for cols in ([2], [0, 2], [2, 3], [2, 4], [0, 1, 2, 3, 4], list(range(len(GATE_FEATURES)))):
        ok = val["features"][val["unflagged"]][:, cols]
        scale = (ok.mean(axis=0), ok.std(axis=0) + 1e-9)
        for lam in (0.0, 0.01, 0.05):
            cross = np.zeros_like(val["direct"])
            for k in range(5):
                train, held = subset(val, folds != k), subset(val, folds == k)
                cross[folds == k] = blended(fitted(train, cols, lam, scale), held, cols, scale)
            weights = fitted(val, cols, lam, scale)
            test = rows["test"]
            row = {
                "features": [GATE_FEATURES[c] for c in cols],
                "lam": lam,
                "validation_cv_ionic_mae_ten": float(tensor_mae(cross, val["reference"])),
                "test_ionic_mae_ten": float(
                    tensor_mae(blended(weights, test, cols, scale), test["reference"])
                ),
            }
            print(row, flush=True)
            results.append(row)
    constant = {
        part: float(
            tensor_mae(
                np.where(
                    rows[part]["unflagged"][:, None, None],
                    rows[part]["direct"] + 0.45 * (rows[part]["physics"] - rows[part]["direct"]),
                    rows[part]["direct"],
                ),
                rows[part]["reference"],
            )
        )
        for part in rows
    }
    grid = np.linspace(0.0, 1.0, 11)

    def component_error(part: dict, alpha: np.ndarray | float) -> np.ndarray:
        """Mean absolute component error per cell of the blend with weight ``alpha``."""
        mixed = part["direct"] + np.asarray(alpha)[..., None, None] * (
            part["physics"] - part["direct"]
        )
        return np.abs(
            np.where(part["unflagged"][:, None, None], mixed, part["direct"]) - part["reference"]
        ).mean(axis=(-2, -1))

    # the headroom: each cell's best weight on a grid of 0.1 (known only with the answer)
    oracle = {
        part: {
            "constant_0.45": float(component_error(rows[part], 0.45).mean()),
            "oracle": float(np.min([component_error(rows[part], a) for a in grid], axis=0).mean()),
        }
        for part in rows
    }
    study = {
        "mean_abs_component_error": oracle,
        "what": "a learnt per-cell weight w(x) of the physics eps0 (predicted charges), "
        "logistic in cell features, fitted on validation, against the constant 0.45",
        "n": {part: len(rows[part]["reference"]) for part in rows},
        "direct_ionic_mae_ten": {
            part: float(tensor_mae(rows[part]["direct"], rows[part]["reference"])) for part in rows
        },
        "constant_0.45_ionic_mae_ten": constant,
        "gates": results,
    }
    save_study(study, args.output)
    return 0


def _block(predicted: np.ndarray, reference: np.ndarray, systems: list[str]) -> dict[str, Any]:
    from anisoscreen.model.training.evaluate import metrics

    if len(predicted) == 0:
        return {"n": 0}
    return metrics(predicted, reference, systems)


def evaluate(args: argparse.Namespace) -> int:
    """Score routes (a), (b) with DFPT charges, (b) with nominal charges, and the refine rule."""
    from anisoscreen.errors import AnisoscreenError
    from anisoscreen.ionic_physics.born import nominal_born_charges
    from anisoscreen.ionic_physics.formula import eps_ionic, impose_born_asr
    from anisoscreen.model.training.error_slices import tensor_mae
    from anisoscreen.model.training.evaluate import crystal_systems

    entries = split_entries(args.ionic_model)
    direct = np.load(args.direct)
    records = [
        r
        for r in _phi_records([args.cache], args.max_sites).values()
        if entries[r["index"]].born is not None
    ]
    rows: dict[str, list[Any]] = {k: [] for k in ("dfpt", "raw", "nominal", "flags")}
    index = [r["index"] for r in records]
    for record in records:
        entry = entries[record["index"]]
        structure = entry.structure
        fc = _force_constants(record)
        result = physics_ionic(structure, entry.born, fc)
        rows["dfpt"].append(result.eps_ionic)
        rows["flags"].append(result.flags)
        # the bare formula, soft modes kept (what an unguarded route would report)
        rows["raw"].append(eps_ionic(impose_born_asr(entry.born), fc.phi, structure.volume))
        try:
            rows["nominal"].append(
                physics_ionic(structure, nominal_born_charges(structure), fc).eps_ionic
            )
        except AnisoscreenError:
            rows["nominal"].append(np.full((3, 3), np.nan))
    predicted = None
    if args.born_model:
        predicted = _predicted_route(
            entries, [args.cache], args.direct, args.born_model, args.max_sites
        )
        assert predicted["index"] == [r["index"] for r in records]
    reference_ionic = np.stack([entries[i].tensor("ionic") for i in index])
    reference_total = np.stack([entries[i].tensor("total") for i in index])
    electronic = direct["electronic"][index]
    direct_ionic = direct["ionic"][index]
    systems = crystal_systems([entries[i].structure for i in index])
    flagged = np.array([bool(f) for f in rows["flags"]])
    dfpt = np.stack(rows["dfpt"])
    routes = {
        "a_direct": direct_ionic,
        "b_physics_dfpt_born": dfpt,
        "b_physics_dfpt_born_unguarded": np.stack(rows["raw"]),
        "b_physics_nominal_born": np.stack(rows["nominal"]),
        "refine_rule_dfpt_born": np.where(flagged[:, None, None], direct_ionic, dfpt),
    }
    if predicted is not None:
        routes["b_physics_predicted_born"] = predicted["physics"]
        routes["refine_rule_predicted_born"] = np.where(
            predicted["flagged"][:, None, None], direct_ionic, predicted["physics"]
        )
    high = np.trace(reference_ionic, axis1=1, axis2=2) / 3 > 20
    cpu = [r["cpu_seconds"] for r in records if "cpu_seconds" in r]
    study: dict[str, Any] = {
        "ionic_model": args.ionic_model,
        "electronic_model": args.electronic_model,
        "direct_models": direct["models"].tolist(),
        "potential": args.potential,
        "n_test": len(entries),
        "n_test_with_dfpt_born": sum(e.born is not None for e in entries),
        "n_scored": len(index),
        "max_sites": args.max_sites,
        "scored_material_ids": [entries[i].material_id for i in index],
        "note": (
            "scored: the test entries with DFPT Born charges and fewer than max_sites sites "
            "whose force constants were computed (a seeded random order)"
        ),
        "flags": {
            "flagged_share": float(flagged.mean()),
            "imaginary_share": float(np.mean(["imaginary_modes" in f for f in rows["flags"]])),
            "soft_share": float(np.mean(["soft_modes" in f for f in rows["flags"]])),
            "large_residual_share": float(
                np.mean(["large_residual_forces" in f for f in rows["flags"]])
            ),
        },
        "residual_force_eV_per_A": {
            "median": float(
                np.median([np.linalg.norm(r["residual_forces"], axis=1).max() for r in records])
            ),
        },
        "phi_seconds": {
            "cpu_mean": float(np.mean(cpu)) if cpu else None,
            "cpu_median": float(np.median(cpu)) if cpu else None,
            "n_with_cpu_time": len(cpu),
            "mean": float(np.mean([r["seconds"] for r in records])),
            "median": float(np.median([r["seconds"] for r in records])),
            "max": float(np.max([r["seconds"] for r in records])),
            "mean_nsites": float(np.mean([r["nsites"] for r in records])),
            "hardware": "x86_64 CPU, 1 torch thread, 2 cores shared with other jobs",
            "note": "mean/median: wall time under that load; cpu_*: the process's CPU time",
        },
        "routes": {},
        "born_model": (
            {
                "model": str(args.born_model),
                "born_mae_e": predicted["born_mae"],
                "flagged_share": float(predicted["flagged"].mean()),
                "note": "MAE per component of the predicted Born charges against the DFPT "
                "ones (sum rule imposed) over the scored structures' sites",
            }
            if predicted is not None
            else None
        ),
        "direct_full_test_split_ionic_mae_ten": float(
            tensor_mae(direct["ionic"], np.stack([e.tensor("ionic") for e in entries]))
        ),
        "direct_full_test_split_total_mae_ten": float(
            tensor_mae(
                direct["ionic"] + direct["electronic"],
                np.stack([e.tensor("total") for e in entries]),
            )
        ),
    }
    for name, ionic in routes.items():
        ok = np.isfinite(ionic).all(axis=(1, 2))
        sys_ok = [s for s, k in zip(systems, ok, strict=True) if k]
        block = {
            "n": int(ok.sum()),
            "ionic": _block(ionic[ok], reference_ionic[ok], sys_ok),
            "total": _block(ionic[ok] + electronic[ok], reference_total[ok], sys_ok),
            "ionic_unflagged": _block(
                ionic[ok & ~flagged],
                reference_ionic[ok & ~flagged],
                [s for s, k in zip(systems, ok & ~flagged, strict=True) if k],
            ),
            "ionic_eps_poly_above_20": _block(
                ionic[ok & high],
                reference_ionic[ok & high],
                [s for s, k in zip(systems, ok & high, strict=True) if k],
            ),
            "total_eps_poly_above_20": _block(
                ionic[ok & high] + electronic[ok & high],
                reference_total[ok & high],
                [s for s, k in zip(systems, ok & high, strict=True) if k],
            ),
        }
        study["routes"][name] = block
        print(
            f"{name}: n={block['n']} ionic MAE_ten {block['ionic'].get('tensor_mae', np.nan):.3f}"
            f" total {block['total'].get('tensor_mae', np.nan):.3f}"
            f" unflagged ionic {block['ionic_unflagged'].get('tensor_mae', np.nan):.3f}"
            f" eps0_poly>20 ionic {block['ionic_eps_poly_above_20'].get('tensor_mae', np.nan):.3f}",
            flush=True,
        )
    save_study(study, args.output, f"flagged {study['flags']['flagged_share']:.1%}; ")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulated discovery campaigns: in distribution, or out of distribution (``--ood``).

In distribution (the default, as before)::

    python benchmarks/bench_campaign.py [--model anisonet-mp-v2] [--rounds 5] [--batch-size 10]
        [--seeds 0 1 2] [--strategies ucb greedy random] [--pool-size N] [--output DIR]

The pool is the validation and test splits (seed 42) of the cleaned shared data set, i.e.
the structures the model was neither trained on nor selected with (539 for the shipped
model; ``--pool-size`` takes a seeded subsample for a reduced run).

Out of distribution::

    python benchmarks/bench_campaign.py --ood layered|chalcogenide [--learners gp finetune]
        [--diversity group|embedding] [--gp-geometry] [--carry-siblings]
        [--json benchmarks/results/campaign_ood_layered.json]

The pool is a regime (:mod:`anisoscreen.model.training.regimes`): every entry of the cleaned
data set in it (all splits) and, for ``layered``, their exfoliated copies; the starting model
(``--model``, by default ``runs/ood/start-<regime>/model.pt`` from
``benchmarks/ood_start.py``) was trained without any of them.

Each strategy starts from the model, picks ``--batch-size`` per round for ``--rounds`` rounds
and learns the revealed labels after each round with each ``--learners`` (``finetune``: the
ensemble fine-tuned, replay from the model's training split only, so no pool label leaks in;
``gp``: a residual GP on the frozen embeddings). Hits are counted in the pool's true top 10
and top 5 % by a_r. Prints and writes (``--output`` folder, and ``--json``) a summary per
learner and strategy: mean hits over the seeds, best a_r against DFT calculations, the MAE on
the unlabelled pool per round (and after the last round's labels, ``--evaluate-final``), and
the +-2 sigma coverage of each round's picks before their labels were revealed. For the
layered pool the MAE is also given on its data-set entries alone and on its structures with
no other padding of their stack in the pool (``mae_subsets``); with ``--carry-siblings``, the
top-10 and top-5 % candidates known (picked, or a sibling of a pick) as ``found_top10``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.campaign.finetune import FinetuneConfig
from anisoscreen.campaign.simulate import (
    SimulationConfig,
    build_oracle,
    build_regime_oracle,
    load_oracle,
    prepare_pool,
    simulate,
    write_oracle,
)
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.training.evaluate import predict_with_embeddings
from anisoscreen.model.training.regimes import REGIMES
from anisoscreen.report.campaign import plot_hits
from anisoscreen.screening.objectives import tensor_values
from anisoscreen.settings import get_settings


def _oracle(args: argparse.Namespace, model: Any, settings: Any) -> list[Any]:
    data = settings.shared / "data" / model.metadata["data_file"]
    if not args.ood:
        oracle = build_oracle(data, model.metadata["split_seed"])
        if args.pool_size:
            order = np.random.default_rng(0).permutation(len(oracle))[: args.pool_size]
            oracle = [oracle[i] for i in sorted(order)]
        return oracle
    cache = Path("runs/ood") / f"pool-{args.ood}.json.gz"
    if cache.exists():
        return load_oracle(cache)
    indices = None
    regime_file = Path("runs/ood") / f"regime-{args.ood}.json"
    if regime_file.exists():
        indices = json.loads(regime_file.read_text())["indices"]
    oracle = build_regime_oracle(data, args.ood, indices)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_oracle(oracle, cache)
    return oracle


def _start_prediction(model: Any, model_name: str, pool: Any) -> tuple[np.ndarray, np.ndarray]:
    """The starting model's a_r member values and embeddings on the pool, cached under runs/.

    The cache is keyed by the model file's checksum and the pool's ids, so every benchmark
    of one starting model and pool predicts it once.
    """
    key = hashlib.sha256(
        (str(model.checksum) + "|".join(e.material_id for e in pool.entries)).encode()
    ).hexdigest()[:16]
    tag = Path(model_name).parent.name or model_name
    cache = Path("runs/start-predictions") / f"{tag}-{key}.npz"
    if cache.exists():
        with np.load(cache) as stored:
            return stored["values"], stored["embeddings"]
    irreps, embeddings = predict_with_embeddings(model.networks, pool.graphs)
    values = tensor_values(tmath.irreps_to_tensor(irreps), "ar")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, values=values, embeddings=embeddings)
    return values, embeddings


def _hits(report: dict[str, Any], truth: dict[str, float], top: set[str]) -> list[int]:
    """Cumulative hits in ``top`` after each round."""
    total, out = 0, []
    for record in report["rounds"]:
        total += sum(1 for m in record["picked"] if m in top)
        out.append(total)
    return out


def _found(report: dict[str, Any], top: set[str], ids: list[str], groups: np.ndarray) -> list[int]:
    """Cumulative candidates of ``top`` known after each round, picked or carried.

    Carried: a sibling of a pick, its label given by the laminate law (``--carry-siblings``).
    """
    group_of = dict(zip(ids, groups.tolist(), strict=True))
    members: dict[float, set[str]] = {}
    for material_id, group in group_of.items():
        if group >= 0:
            members.setdefault(group, set()).add(material_id)
    known: set[str] = set()
    out = []
    for record in report["rounds"]:
        for material_id in record["picked"]:
            known |= members.get(group_of[material_id], {material_id})
        out.append(len(known & top))
    return out


def _summary(runs: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    def mean_curve(key: str) -> list[float | None]:
        curves = [[r[key] for r in run["rounds"]] for run in runs]
        return [
            float(np.mean([c[i] for c in curves if len(c) > i and c[i] is not None]))
            if any(len(c) > i and c[i] is not None for c in curves)
            else None
            for i in range(rounds)
        ]

    finals = [r["final_mae_unlabelled"] for r in runs if r["final_mae_unlabelled"] is not None]
    mae0 = float(np.mean([r["rounds"][0]["mae_unlabelled"] for r in runs]))
    final = float(np.mean(finals)) if finals else None
    found = (
        {
            "found_top10": [r["found_top10"][-1] for r in runs],
            "mean_found_top10": float(np.mean([r["found_top10"][-1] for r in runs])),
            "mean_found_top5pct": float(np.mean([r["found_top5pct"][-1] for r in runs])),
        }
        if runs and "found_top10" in runs[0]
        else {}
    )
    subsets = {}
    for name in runs[0].get("final_mae_unlabelled_subsets", {}) if runs else ():
        start = float(np.mean([r["rounds"][0]["mae_unlabelled_subsets"][name] for r in runs]))
        end = float(np.mean([r["final_mae_unlabelled_subsets"][name] for r in runs]))
        subsets[name] = {"mae_unlabelled": [start, end], "mae_drop": 1 - end / start}
    return {
        **found,
        "mae_subsets": subsets,
        "hits_top10": [r["hits_top10"][-1] for r in runs],
        "mean_hits_top10": float(np.mean([r["hits_top10"][-1] for r in runs])),
        "hits_top5pct": [r["hits_top5pct"][-1] for r in runs],
        "mean_hits_top5pct": float(np.mean([r["hits_top5pct"][-1] for r in runs])),
        "best_vs_dft": {
            "dft_calculations": [r["dft"] for r in runs[0]["rounds"]] if runs else [],
            "mean_best": mean_curve("best"),
        },
        "mae_unlabelled_per_round": mean_curve("mae_unlabelled"),
        "mae_unlabelled_after_last": final,
        "mae_drop_round0_to_end": (1 - final / mae0) if final is not None else None,
        "coverage_2sigma_per_round": mean_curve("coverage_2sigma"),
        "sigma_scale_per_round": mean_curve("sigma_scale"),
        "seconds_mean": float(np.mean([r["wall_seconds"] for r in runs])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ood", choices=sorted(REGIMES), default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=None)
    parser.add_argument("--learners", nargs="+", default=None, choices=["finetune", "gp"])
    parser.add_argument("--finetune-strategies", nargs="+", default=None)
    parser.add_argument("--diversity", default="group", choices=["group", "embedding"])
    parser.add_argument("--recalibrate", action="store_true")
    parser.add_argument("--gp-offset", action="store_true")
    parser.add_argument("--gp-geometry", action="store_true")
    parser.add_argument("--carry-siblings", action="store_true")
    parser.add_argument("--unseen-elements", action="store_true")
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument("--top-fraction", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--replay", type=int, default=200)
    parser.add_argument("--label-repeats", type=int, default=1)
    parser.add_argument("--lr", type=float, default=FinetuneConfig.lr, help="fine-tuning rate")
    parser.add_argument("--readout-only", action="store_true")
    parser.add_argument("--max-per-group", type=int, default=3)
    parser.add_argument("--evaluate-final", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    strategies = args.strategies or (
        ["ucb", "greedy", "thompson", "random"] if args.ood else ["ucb", "greedy", "random"]
    )
    learners = args.learners or (["gp"] if args.ood else ["finetune"])
    output = args.output or Path(f"runs/bench-campaign{'-' + args.ood if args.ood else ''}")

    settings = get_settings()
    model_name = args.model or (
        str(Path("runs/ood") / f"start-{args.ood}" / "model.pt") if args.ood else settings.model
    )
    model = load_model(model_name, settings.data_dir)
    oracle = _oracle(args, model, settings)
    known = set(model.config.elements)
    if not args.unseen_elements:
        oracle = [
            e for e in oracle if all(el.Z in known for el in e.structure.composition.elements)
        ]
    top_k = math.ceil(args.top_fraction * len(oracle))

    # every campaign starts from the same model: predict the pool once (values + embeddings)
    base_config = SimulationConfig(
        model=model_name,
        group_by="prototype",
        unseen_elements=args.unseen_elements,
        gp_geometry=args.gp_geometry,
    )
    pool = prepare_pool(oracle, model, base_config)
    start_values, embeddings = _start_prediction(model, model_name, pool)
    truth = {e.material_id: float(t) for e, t in zip(pool.entries, pool.truth, strict=True)}
    ranked = sorted(truth, key=lambda m: -truth[m])
    top10, top_pct = set(ranked[:10]), set(ranked[:top_k])
    start_top30 = {pool.entries[i].material_id for i in np.argsort(-start_values.mean(0))[:30]}

    # the layered pool's data-set entries (without the exfoliated copies made from them), and
    # its structures with no other padding of their stack in the pool (no label can be
    # carried to them: what the learner itself learns)
    subsets = None
    if args.ood == "layered":
        alone = pool.sibling_table()[:, 0] < 0
        subsets = {
            "entries": {e.material_id for e in pool.entries if "-exf" not in e.material_id},
            "no sibling": {e.material_id for e, a in zip(pool.entries, alone, strict=True) if a},
        }
    output.mkdir(parents=True, exist_ok=True)
    finetune = FinetuneConfig(
        epochs=args.epochs,
        replay=args.replay,
        label_repeats=args.label_repeats,
        readout_only=args.readout_only,
        lr=args.lr,
    )
    reports: dict[str, list[dict[str, Any]]] = {}
    for learner in learners:
        chosen = strategies
        if learner == "finetune" and args.finetune_strategies:
            chosen = args.finetune_strategies
        for strategy in chosen:
            for seed in args.seeds:
                wall, cpu = time.perf_counter(), time.process_time()
                config = SimulationConfig(
                    strategy=strategy,
                    rounds=args.rounds,
                    batch_size=args.batch_size,
                    seed=seed,
                    top_k=top_k,
                    max_per_group=args.max_per_group,
                    model=model_name,
                    finetune=finetune if args.epochs else None,
                    learner=learner,
                    diversity=args.diversity,
                    recalibrate=args.recalibrate,
                    gp_offset=args.gp_offset,
                    gp_geometry=args.gp_geometry,
                    unseen_elements=args.unseen_elements,
                    carry_siblings=args.carry_siblings,
                )
                report = simulate(
                    oracle,
                    config,
                    settings.shared,
                    settings.data_dir,
                    pool_predictions=start_values,
                    pool_embeddings=embeddings,
                    evaluate_final=args.evaluate_final,
                    prepared=pool,
                    mae_subsets=subsets,
                )
                report["wall_seconds"] = round(time.perf_counter() - wall, 1)
                report["cpu_seconds"] = round(time.process_time() - cpu, 1)
                report["hits_top10"] = _hits(report, truth, top10)
                report["hits_top5pct"] = _hits(report, truth, top_pct)
                if args.carry_siblings:
                    groups = pool.sibling_table()[:, 0]
                    ids = [e.material_id for e in pool.entries]
                    report["found_top10"] = _found(report, top10, ids, groups)
                    report["found_top5pct"] = _found(report, top_pct, ids, groups)
                for i, record in enumerate(report["rounds"]):
                    record["dft"] = (i + 1) * args.batch_size
                tag = f"{learner}-{strategy}-seed{seed}"
                (output / f"{tag}.json").write_text(json.dumps(report, indent=2))
                reports.setdefault(f"{learner}/{strategy}", []).append(report)
                end_mae = report["final_mae_unlabelled"] or report["rounds"][-1]["mae_unlabelled"]
                print(
                    f"{tag}: top10 {report['hits_top10'][-1]}, top5% {report['hits_top5pct'][-1]},"
                    f" MAE {report['rounds'][0]['mae_unlabelled']:.3f} -> {end_mae:.3f},"
                    f" {report['wall_seconds']} s",
                    flush=True,
                )
    results = {key: _summary(runs, args.rounds) for key, runs in reports.items()}
    mean = {key: v["mean_hits_top5pct"] for key, v in results.items()}
    summary = {
        "mode": f"out of distribution: {args.ood}" if args.ood else "in distribution",
        "model": model_name,
        "members": len(model.networks),
        "pool_size": len(pool.entries),
        "top_k": top_k,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "seeds": args.seeds,
        "diversity": args.diversity,
        "recalibrate_finetune": args.recalibrate,
        "gp_offset": args.gp_offset,
        "gp_geometry": args.gp_geometry,
        "carry_siblings": args.carry_siblings,
        "unseen_elements": args.unseen_elements,
        "finetune": finetune.to_dict() if args.epochs else None,
        "max_per_group": args.max_per_group,
        "start_model_top30_holds_true_top10": len(start_top30 & top10),
        "mean_hits": mean,
        "hits": {key: [r["total_hits"] for r in runs] for key, runs in reports.items()},
        "results": results,
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    plot_hits([r for runs in reports.values() for r in runs], output / "hits.png")
    print(json.dumps({k: summary[k] for k in summary if k != "results"}, indent=2))
    for key, value in results.items():
        print(
            f"{key:24s} top10 {value['mean_hits_top10']:.2f} top5% {value['mean_hits_top5pct']:.2f}"
            f" MAE {value['mae_unlabelled_per_round']} final {value['mae_unlabelled_after_last']}"
            f" coverage {value['coverage_2sigma_per_round']}"
        )


if __name__ == "__main__":
    main()

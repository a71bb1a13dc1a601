"""Simulated discovery campaigns on structures the shipped model never trained on.

    python benchmarks/bench_campaign.py [--model anisonet-mp-v2] [--rounds 5] [--batch-size 10]
        [--seeds 0 1 2] [--strategies ucb greedy random] [--pool-size N] [--output DIR]

The pool is the validation and test splits (seed 42) of the cleaned shared data set, i.e.
the structures the model was neither trained on nor selected with (539 for the shipped
model; ``--pool-size`` takes a seeded subsample for a reduced run). Each strategy starts from
the model, picks ``--batch-size`` per round for ``--rounds`` rounds and is fine-tuned on the
revealed labels after each round (replay from the model's training split only, so no pool
label leaks in). A hit is a pick in the pool's true top 5 % by a_r. Prints one JSON summary
(mean hits per strategy over the seeds, the ratio to random, CPU and wall seconds) and writes
every run's report, the summary and a figure of hits against DFT calculations to
``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.campaign.finetune import FinetuneConfig
from anisoscreen.campaign.simulate import SimulationConfig, build_oracle, simulate
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.training.dataset import DielectricEntry
from anisoscreen.model.training.evaluate import predict_irreps
from anisoscreen.model.training.train import prepare_graphs
from anisoscreen.report.campaign import plot_hits
from anisoscreen.screening.objectives import tensor_values
from anisoscreen.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=["ucb", "greedy", "random"])
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument("--top-fraction", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--replay", type=int, default=200)
    parser.add_argument("--max-per-group", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("runs/bench-campaign"))
    args = parser.parse_args()

    settings = get_settings()
    model_name = args.model or settings.model
    model = load_model(model_name, settings.data_dir)
    data = settings.shared / "data" / model.metadata["data_file"]
    oracle = build_oracle(data, model.metadata["split_seed"])
    if args.pool_size:
        order = np.random.default_rng(0).permutation(len(oracle))[: args.pool_size]
        oracle = [oracle[i] for i in sorted(order)]
    known = set(model.config.elements)
    oracle = [e for e in oracle if all(el.Z in known for el in e.structure.composition.elements)]
    top_k = math.ceil(args.top_fraction * len(oracle))

    # every strategy starts from the same model: predict the pool once
    graphs = prepare_graphs(
        [DielectricEntry(e.material_id, "", e.structure, e.dielectric_tensor) for e in oracle],
        model.config.cutoff,
        model.config.atom_features,
    )
    start_values = tensor_values(
        tmath.irreps_to_tensor(predict_irreps(model.networks, graphs)), "ar"
    )

    args.output.mkdir(parents=True, exist_ok=True)
    reports = []
    for strategy in args.strategies:
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
                finetune=FinetuneConfig(epochs=args.epochs, replay=args.replay)
                if args.epochs
                else None,
            )
            report = simulate(
                oracle, config, settings.shared, settings.data_dir, pool_predictions=start_values
            )
            report["wall_seconds"] = round(time.perf_counter() - wall, 1)
            report["cpu_seconds"] = round(time.process_time() - cpu, 1)
            (args.output / f"{strategy}-seed{seed}.json").write_text(json.dumps(report, indent=2))
            reports.append(report)
            print(
                f"{strategy} seed {seed}: {report['total_hits']} hits, {report['wall_seconds']} s",
                flush=True,
            )
    mean = {
        s: float(np.mean([r["total_hits"] for r in reports if r["strategy"] == s]))
        for s in args.strategies
    }
    summary = {
        "model": model_name,
        "pool_size": len(oracle),
        "top_k": top_k,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "seeds": args.seeds,
        "finetune": {"epochs": args.epochs, "replay": args.replay},
        "max_per_group": args.max_per_group,
        "mean_hits": mean,
        "hits": {
            s: [r["total_hits"] for r in reports if r["strategy"] == s] for s in args.strategies
        },
        "ratio_to_random": {
            s: (v / mean["random"] if mean.get("random") else None) for s, v in mean.items()
        },  # fmt: skip
        "wall_seconds": {
            s: float(np.mean([r["wall_seconds"] for r in reports if r["strategy"] == s]))
            for s in args.strategies
        },
        "cpu_seconds": {
            s: float(np.mean([r["cpu_seconds"] for r in reports if r["strategy"] == s]))
            for s in args.strategies
        },
    }
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_hits(reports, args.output / "hits.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

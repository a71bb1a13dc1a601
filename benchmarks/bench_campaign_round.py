"""Time of campaign rounds on a 3,000-structure pool (batch 20) with the residual-GP learner.

    python benchmarks/bench_campaign_round.py [--model anisonet-mp-v3] [--pool 3000]
        [--batch-size 20] [--rounds 2] [--json benchmarks/results/campaign_round_timing.json]

The pool is the cleaned shared data set plus exfoliated copies of its layered entries, cut
to ``--pool`` structures; the labels are revealed from it (the local stand-in for DFT, whose
own time is not part of a round). Reported: the pool's preparation (graphs, prototype labels),
the prediction pass (member values and embeddings in one pass), and each round's wall and
CPU seconds (round 0 holds no labels; later rounds fit the GP on the labels so far and pick).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.campaign.simulate import (
    SimulationConfig,
    build_oracle,
    build_regime_oracle,
    prepare_pool,
    simulate,
)
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.training.evaluate import predict_with_embeddings
from anisoscreen.screening.objectives import tensor_values
from anisoscreen.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    settings = get_settings()
    name = args.model or settings.model
    model = load_model(name, settings.data_dir)
    data = settings.shared / "data" / model.metadata["data_file"]
    oracle = build_oracle(data, model.metadata["split_seed"], ("train", "validation", "test"))
    if len(oracle) < args.pool:
        cached = Path("runs/ood/regime-layered.json")  # from benchmarks/ood_start.py, if run
        indices = json.loads(cached.read_text())["indices"] if cached.exists() else None
        layered = build_regime_oracle(data, "layered", indices)
        copies = [e for e in layered if "-exf" in e.material_id]
        oracle += copies[: args.pool - len(oracle)]
    oracle = oracle[: args.pool]
    config = SimulationConfig(
        strategy="ucb",
        rounds=args.rounds,
        batch_size=args.batch_size,
        model=name,
        learner="gp",
        diversity="embedding",
        top_k=10,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    pool = prepare_pool(oracle, model, config)
    prepare = (time.perf_counter() - wall, time.process_time() - cpu)
    print(f"pool of {len(pool.entries)} prepared: {prepare[0]:.1f} s wall", flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    irreps, embeddings = predict_with_embeddings(model.networks, pool.graphs)
    values = tensor_values(tmath.irreps_to_tensor(irreps), "ar")
    predict = (time.perf_counter() - wall, time.process_time() - cpu)
    print(f"predicted ({len(model.networks)} members): {predict[0]:.1f} s wall", flush=True)
    wall, cpu = time.perf_counter(), time.process_time()
    report = simulate(
        oracle,
        config,
        settings.shared,
        settings.data_dir,
        pool_predictions=values,
        pool_embeddings=embeddings,
        prepared=pool,
        progress=lambda line: print(line, flush=True),
    )
    rounds = (time.perf_counter() - wall, time.process_time() - cpu)
    result = {
        "model": name,
        "members": len(model.networks),
        "pool": len(pool.entries),
        "batch_size": args.batch_size,
        "prepare_pool": {"wall_s": round(prepare[0], 1), "cpu_s": round(prepare[1], 1)},
        "predict_pass": {"wall_s": round(predict[0], 1), "cpu_s": round(predict[1], 1)},
        "rounds": [{"round": r["round"], "wall_s": r["seconds"]} for r in report["rounds"]],
        "all_rounds": {"wall_s": round(rounds[0], 1), "cpu_s": round(rounds[1], 1)},
        "one_round_wall_s": round(
            prepare[0] + predict[0] + float(np.max([r["seconds"] for r in report["rounds"]])), 1
        ),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

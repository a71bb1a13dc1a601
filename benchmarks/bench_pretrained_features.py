"""Throughput of batched, forward-only SevenNet-0 node-feature extraction.

    python benchmarks/bench_pretrained_features.py [--n 256] [--threads 1 2] [--batch-size 32]
        [--feature-set sevennet-0]

On the first ``--n`` structures (cells under 40 sites) of the shared 3,688-structure MP oxide
pool (the speed target's set), for each thread count:
  * graph construction at 5 A (our pymatgen neighbour list; the predictor builds these graphs
    anyway and hands them to the featuriser, so this is not an added cost of prediction),
  * the SevenNet-0 forward pass up to the chosen layer (``torch.inference_mode``, no forces),
    median of ``--repeats`` runs: structures/s and milliseconds per structure, which is the
    cost the features add to each prediction,
  * for reference, the element-only ``anisonet-mp-v2`` ensemble's forward pass on the same
    graphs, and the same network with SevenNet features (one member) on top.
Results print as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _pool import pool_candidates

from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.nn.graph import collate
from anisoscreen.model.nn.network import AnisoNet
from anisoscreen.model.pretrained_features import SevenNetFeaturizer


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


@torch.inference_mode()
def forward_all(networks: list[AnisoNet], graphs, batch_size: int) -> None:
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size])
        for net in networks:
            net(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--feature-set",
        default="sevennet-0",
        help="a SevenNet feature set (sevennet-0, sevennet-0-scalars, sevennet-l3i5-scalars)",
    )
    parser.add_argument(
        "--model", default=None, help="a model trained on that feature set (optional)"
    )
    args = parser.parse_args()

    structures = [c.structure for c in pool_candidates(args.n)]
    featurizer = SevenNetFeaturizer(args.feature_set, batch_size=args.batch_size)
    n_atoms = sum(len(s) for s in structures)
    result: dict = {
        "feature_set": args.feature_set,
        "n_structures": len(structures),
        "n_atoms": n_atoms,
        "runs": [],
    }
    v2 = load_model("anisonet-mp-v2").networks
    sevennet_model = load_model(args.model).networks if args.model else None
    start = time.perf_counter()
    graphs = featurizer.graphs(structures)  # numpy neighbour search: thread count irrelevant
    result["graph_structures_per_s"] = len(graphs) / (time.perf_counter() - start)
    for threads in args.threads:
        torch.set_num_threads(threads)
        featurizer.features_of_graphs(graphs[: args.batch_size])  # warm-up
        feature_times = timed(lambda: featurizer.features_of_graphs(graphs), args.repeats)
        seconds = statistics.median(feature_times)
        run = {
            "threads": threads,
            "feature_seconds": [round(t, 3) for t in feature_times],
            "feature_structures_per_s": len(graphs) / seconds,
            "feature_atoms_per_s": n_atoms / seconds,
            "feature_ms_per_structure": 1000 * seconds / len(graphs),
        }
        v2_times = timed(lambda: forward_all(v2, graphs, 64), args.repeats)
        run["v2_ensemble_forward_ms_per_structure"] = (
            1000 * statistics.median(v2_times) / len(graphs)
        )
        if sevennet_model is not None:
            features = featurizer.features_of_graphs(graphs)
            for graph, value in zip(graphs, features, strict=True):
                graph.atom_features = value
            times = timed(lambda: forward_all(sevennet_model, graphs, 64), args.repeats)
            run["sevennet_model_forward_ms_per_structure"] = (
                1000 * statistics.median(times) / len(graphs)
            )
            run["sevennet_model_members"] = len(sevennet_model)
            for graph in graphs:
                graph.atom_features = None
        result["runs"].append(run)
        print(json.dumps(run), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

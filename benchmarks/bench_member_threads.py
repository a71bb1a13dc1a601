"""Ensemble forward with the members in a loop against the members on threads.

    python benchmarks/bench_member_threads.py [--model anisonet-mp-v3] [--n 1280]

Builds the graphs of the first ``n`` structures of the shared pool once, then times
``Predictor.predict_graphs`` over them in batches of 64, alternately with the members run one
after another on all intra-op threads (``MemberThreads(threads=1)``) and side by side with one
intra-op thread each (the default), twice each. Checks that both give the same tensors and
prints the times as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _pool import pool_candidates

from anisoscreen.model.inference import Predictor
from anisoscreen.model.member_threads import MemberThreads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="anisonet-mp-v3")
    parser.add_argument("--n", type=int, default=1280, help="structures timed")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    candidates = pool_candidates(args.n, max_sites=None)
    predictor = Predictor.load(args.model, device="cpu")
    graphs = [predictor.graph_or_error(c.structure, c.band_gap) for c in candidates]
    graphs = [g for g in graphs if not isinstance(g, str)]
    batches = [graphs[i : i + 64] for i in range(0, len(graphs), 64)]
    runners = {"members_in_a_loop": MemberThreads(threads=1), "members_on_threads": MemberThreads()}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, runner in runners.items():
            predictor._members = runner
            started = time.perf_counter()
            outputs[name] = np.concatenate([predictor.predict_graphs(b) for b in batches], axis=1)
            seconds[name].append(round(time.perf_counter() - started, 2))
    difference = float(np.abs(outputs["members_in_a_loop"] - outputs["members_on_threads"]).max())
    print(
        json.dumps(
            {
                "model": args.model,
                "members": len(predictor.model.networks),
                "structures": len(graphs),
                "intra_op_threads": torch.get_num_threads(),
                "seconds": seconds,
                "max_abs_difference": difference,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

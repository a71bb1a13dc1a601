"""Inference and training speed of the equivariant model, and peak memory.

    python benchmarks/bench_inference.py [--mul 48 --lmax 3] [--n 480] [--batch-size 64]

Measures, on the shared 3,688-structure MP oxide pool (cells under 40 sites):
  * graph construction (structures/s),
  * batched forward pass under ``torch.inference_mode`` (structures/s; median of
    ``--repeats`` runs, each listed),
  * a straightforward one-structure-at-a-time loop (float64, autograd on) for comparison,
  * a training step rate (batch 12, AdamW, after one warm-up step) extrapolated to a
    2,150-structure epoch (median of ``--repeats`` runs of ``--train-steps`` steps),
  * peak resident memory of streaming prediction over the whole 3,688-structure pool, in a
    fresh process (``--memory``),
  * the roofline ratio: achieved GFLOP/s of the forward pass against this machine's measured
    dense float32 matmul peak (``--roofline``). FLOPs are counted by
    ``torch.utils.flop_counter`` on the PyTorch path of the edge tensor product (matrix
    products only; the fused kernel does the same contractions), per structure, and
    multiplied by the measured forward rate,
  * with ``--profile``, where the forward's time goes (``torch.profiler`` over the timed
    batches): the share of the wall time inside operators by kind (the fused edge kernel,
    matrix products with their mean size and rate, gathers and scatters, sorting, the rest)
    and outside any operator (Python and dispatch), operators per batch and time per batch.
Weights are random: speed does not depend on their values. Results print as JSON.
``ANISOSCREEN_FUSED_KERNEL=0`` measures the PyTorch path of the edge tensor product instead of
the fused CPU kernel.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from _pool import pool_candidates, pool_path

from anisoscreen.model.nn.edge_tp import cpu_fused as fused
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig
from anisoscreen.model.runtime import tune_allocator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mul", type=int, default=48)
    parser.add_argument("--lmax", type=int, default=3)
    parser.add_argument("--n", type=int, default=480, help="structures timed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--naive-n", type=int, default=48, help="structures for the naive loop")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of forward and training (median)"
    )
    parser.add_argument(
        "--memory", action="store_true", help="stream the whole pool, report peak RSS"
    )
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--roofline", action="store_true", help="report GFLOP/s against the matmul peak"
    )
    parser.add_argument(
        "--profile", action="store_true", help="where the forward's time goes (torch.profiler)"
    )
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="stop after the forward, roofline and profile (no loop, training, memory)",
    )
    parser.add_argument(
        "--readout", default="mean", choices=["mean", "sum_volume", "psd_sum_volume"]
    )
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(stream_pool(args.mul, args.lmax, args.batch_size)))
        return
    torch.manual_seed(0)
    tuned = tune_allocator()
    result: dict = {
        "threads": torch.get_num_threads(),
        "fused_kernel": fused.load_kernel() is not None,
        "mul": args.mul,
        "lmax": args.lmax,
        "allocator_tuned": tuned,
    }

    structures = [c.structure for c in pool_candidates(args.n or None)]
    start = time.perf_counter()
    graphs = [structure_to_graph(s, allow_isolated=True) for s in structures[: args.n]]
    result["graph_structures_per_s"] = len(graphs) / (time.perf_counter() - start)
    result["mean_atoms"] = float(np.mean([g.num_nodes for g in graphs]))
    result["mean_edges"] = float(np.mean([g.num_edges for g in graphs]))
    # edges whose length occurs for the first time in their batch: the radial MLP rows
    batches = [
        collate(graphs[i : i + args.batch_size]) for i in range(0, len(graphs), args.batch_size)
    ]
    result["distinct_length_fraction"] = sum(
        len(torch.unique(b.edge_vec.norm(dim=1))) for b in batches
    ) / sum(b.edge_vec.shape[0] for b in batches)

    config = ModelConfig(mul=args.mul, lmax=args.lmax, readout=args.readout, volume_per_atom=12.0)
    model = AnisoNet(config).eval()
    result["parameters"] = model.num_parameters
    with torch.inference_mode():
        model(collate(graphs[: args.batch_size]))  # warm-up
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for i in range(0, len(graphs), args.batch_size):
                model(collate(graphs[i : i + args.batch_size]))
            rates.append(len(graphs) / (time.perf_counter() - start))
    result["forward_structures_per_s"] = float(np.median(rates))
    result["forward_structures_per_s_runs"] = [round(r, 1) for r in rates]
    if args.roofline:
        result.update(roofline(model, batches, result["forward_structures_per_s"]))
    if args.profile:
        result["profile"] = profile_forward(model, batches)
        if args.profile_only:
            print(json.dumps(result, indent=2))
            return
    forward = len(graphs) / result["forward_structures_per_s"]
    result["end_to_end_structures_per_s"] = len(graphs) / (
        forward + len(graphs) / result["graph_structures_per_s"]
    )

    naive = AnisoNet(ModelConfig(mul=args.mul, lmax=args.lmax)).double()
    start = time.perf_counter()
    for structure in structures[: args.naive_n]:
        naive(collate([structure_to_graph(structure, allow_isolated=True)], torch.float64))
    result["naive_structures_per_s"] = args.naive_n / (time.perf_counter() - start)
    result["speedup_vs_naive"] = (
        result["end_to_end_structures_per_s"] / result["naive_structures_per_s"]
    )

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    target = torch.randn(12, 6)

    def train_step(step: int) -> None:
        batch = collate(graphs[step * 12 : step * 12 + 12])
        loss = torch.nn.functional.mse_loss(model(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train_step(args.train_steps)  # warm-up (allocations, optimizer state), not timed
    epochs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for step in range(args.train_steps):
            train_step(step)
        epochs.append((time.perf_counter() - start) / (12 * args.train_steps) * 2150)
    result["train_epoch_seconds_2150"] = float(np.median(epochs))
    result["train_epoch_seconds_2150_runs"] = [round(e, 1) for e in epochs]

    if args.memory:
        # a fresh interpreter, so the peak is that of streaming prediction alone
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                "--mul",
                str(args.mul),
                "--lmax",
                str(args.lmax),
                "--batch-size",
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result.update(json.loads(child.stdout))
    print(json.dumps(result, indent=2))


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Measured dense float32 matrix-product rate of this machine (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def roofline(model: AnisoNet, batches: list, structures_per_s: float) -> dict:
    """GFLOP per structure of the forward pass, achieved GFLOP/s and the ratio to the peak."""
    from torch.utils.flop_counter import FlopCounterMode

    saved = os.environ.get(fused.DISABLE_ENV)
    os.environ[fused.DISABLE_ENV] = "0"  # count on the PyTorch path: the same contractions
    fused.load_kernel.cache_clear()
    try:
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            for batch in batches[:3]:
                model(batch)
    finally:
        if saved is None:
            os.environ.pop(fused.DISABLE_ENV)
        else:
            os.environ[fused.DISABLE_ENV] = saved
        fused.load_kernel.cache_clear()
    per_structure = counter.get_total_flops() / sum(b.num_graphs for b in batches[:3]) / 1e9
    achieved = per_structure * structures_per_s
    peak = matmul_peak_gflops()
    return {
        "forward_gflop_per_structure": per_structure,
        "forward_gflops_achieved": achieved,
        "matmul_peak_gflops": peak,
        "roofline_ratio": achieved / peak,
    }


_KINDS = {
    "fused edge kernel": ("anisoscreen", "edge_tp", "fused"),
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"),
    "gathers and scatters": (
        "aten::index",
        "aten::index_select",
        "aten::index_add",
        "aten::index_put",
        "aten::gather",
        "aten::scatter",
        "aten::embedding",
        "aten::segment",
    ),
    "sorting and unique": ("aten::sort", "aten::argsort", "aten::unique", "aten::_unique"),
}


def _kind(name: str) -> str:
    for kind, prefixes in _KINDS.items():
        if any(name.startswith(p) or (p in name and not p.startswith("aten")) for p in prefixes):
            return kind
    return "other operators"


def profile_forward(model: AnisoNet, batches: list) -> dict:
    """Where the forward's wall time goes, by kind of top-level operator (torch.profiler).

    Top-level operators (those called from Python, not from another operator) are timed on
    the calling thread; their sum against the wall time of the batches leaves the time spent
    in Python and dispatch between them. Matrix products report their mean FLOPs per call and
    the rate they ran at.
    """
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(batches[0])  # warm-up
        start = time.perf_counter()
        for batch in batches:
            model(batch)
        unprofiled = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            wall = time.perf_counter() - start
    top = [e for e in prof.events() if e.cpu_parent is None and not e.name.startswith("##")]
    by_kind: dict[str, float] = {}
    counts: dict[str, int] = {}
    mm_flops = mm_seconds = 0.0
    mm_calls = 0
    for event in top:
        seconds = event.cpu_time_total / 1e6
        kind = _kind(event.name)
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "matrix products" and event.input_shapes and len(event.input_shapes) >= 2:
            shapes = [s for s in event.input_shapes if s]
            a, b = shapes[-2], shapes[-1]
            if len(a) == 2 and len(b) == 2:
                mm_flops += 2.0 * a[0] * a[1] * b[1]
                mm_seconds += seconds
                mm_calls += 1
    in_operators = sum(by_kind.values())
    n = len(batches)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return {
        "batches": n,
        "structures": sum(b.num_graphs for b in batches),
        "seconds_per_batch": wall / n,
        "seconds_per_batch_unprofiled": unprofiled / n,
        "operators_per_batch": len(top) / n,
        "share_of_wall": {kind: t / wall for kind, t in sorted(by_kind.items())},
        "share_outside_operators": max(0.0, 1.0 - in_operators / wall),
        "calls_per_batch": {kind: c / n for kind, c in sorted(counts.items())},
        "matmul_2d_calls_per_batch": mm_calls / n,
        "matmul_2d_mean_mflop": mm_flops / max(mm_calls, 1) / 1e6,
        "matmul_2d_gflops": mm_flops / max(mm_seconds, 1e-12) / 1e9,
        "top_operators": table.splitlines(),
    }


def stream_pool(mul: int, lmax: int, batch_size: int) -> dict:
    """Predict every structure of the whole pool file (3,688), streaming ``batch_size`` at a
    time as ``anisoscreen predict`` does; report time and peak resident memory."""
    from anisoscreen.structures_io import iter_json_records

    tune_allocator()
    torch.manual_seed(0)
    model = AnisoNet(ModelConfig(mul=mul, lmax=lmax)).eval()
    start, n = time.perf_counter(), 0
    records = iter_json_records(pool_path())
    with torch.inference_mode():
        while chunk := [r.structure for r in itertools.islice(records, batch_size)]:
            model(collate([structure_to_graph(s, allow_isolated=True) for s in chunk]))
            n += len(chunk)
    return {
        "pool_structures": n,
        "pool_seconds": time.perf_counter() - start,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


if __name__ == "__main__":
    main()

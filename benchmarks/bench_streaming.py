"""Streaming prediction at scale: throughput and memory of ``anisoscreen predict`` on N structures.

    python benchmarks/bench_streaming.py --sizes 10000 100000 [--model anisonet-mp-v2]
        [--threads 1] [--seed 0] [--workdir /tmp/anisoscreen-bench-streaming] [--keep]

For every size N a synthetic pool is written as gzip JSON Lines: the shared 3,688-structure MP
oxide pool cycled, every site displaced by a seeded Gaussian (``--displacement`` Å per
Cartesian component, 0.01 by default) and every id suffixed ``-synNNNNNN``. The writer holds
one structure at a time, never N. ``anisoscreen predict`` then runs on that file in a fresh
process (the real CLI, ``python -m anisoscreen.cli predict``) while this script samples the
process's resident memory (``/proc/<pid>/status``) and the lines written so far. Reported per
size: wall time, the time to the first written line (start-up: imports and model load),
throughput over the whole run and in steady state (from 10 % to 100 % of the lines), peak RSS
(``ru_maxrss`` of that child, from ``wait4``) and RSS when 10 %, 50 % and 100 % of the lines
were written. The machine's load average at start and end is recorded too: on a shared
machine the throughput is a measurement under that load.

Prints a table and writes ``benchmarks/results/streaming_<sizes>.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
POOL = "mp_candidates_oxides.json.gz"
CLI = "import sys; from anisoscreen.cli import main; sys.argv[0] = 'anisoscreen'; main()"
"""The console script's entry point, run by the interpreter of this script."""


def shared_pool() -> list[dict[str, Any]]:
    """The shared MP oxide pool (3,688 documents; the only list held in memory)."""
    from anisoscreen.settings import get_settings

    with gzip.open(get_settings().shared / "data" / POOL, "rt") as handle:
        return json.load(handle)


def synthetic_documents(
    pool: list[dict[str, Any]], n: int, seed: int, displacement: float
) -> Iterator[dict[str, Any]]:
    """``n`` documents: the pool cycled, sites displaced by a Gaussian of ``displacement`` Å."""
    rng = np.random.default_rng(seed)
    for index in range(n):
        base = pool[index % len(pool)]
        structure = base["structure"]
        matrix = np.array(structure["lattice"]["matrix"])
        frac = np.array([site["abc"] for site in structure["sites"]])
        cart = frac @ matrix + rng.normal(0.0, displacement, size=frac.shape)
        new_frac = np.linalg.solve(matrix.T, cart.T).T
        sites = [
            {**site, "abc": abc.tolist(), "xyz": xyz.tolist()}
            for site, abc, xyz in zip(structure["sites"], new_frac, cart, strict=True)
        ]
        yield {
            **base,
            "material_id": f"{base['material_id']}-syn{index:06d}",
            "structure": {**structure, "sites": sites},
        }


def write_pool(path: Path, n: int, seed: int, displacement: float) -> float:
    """Write ``n`` synthetic documents as gzip JSON Lines; return the seconds it took."""
    start = time.perf_counter()
    pool = shared_pool()
    with gzip.open(path, "wt", compresslevel=1) as handle:
        for doc in synthetic_documents(pool, n, seed, displacement):
            handle.write(json.dumps(doc) + "\n")
    return time.perf_counter() - start


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_predict(
    source: Path,
    output: Path,
    model: str,
    threads: int,
    interval: float,
    checkpoint: Callable[[list[tuple[float, int, float]]], None] | None = None,
    checkpoint_every: float = 30.0,
) -> dict[str, Any]:
    """Run ``anisoscreen predict`` in a fresh process; wall time, peak RSS and RSS samples.

    ``checkpoint`` gets the samples so far every ``checkpoint_every`` seconds (a run stopped
    early still leaves its memory curve behind).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-c", CLI, "predict", str(source), "-o", str(output)]
    command += ["--model", model, "--device", "cpu"]
    partial = output.with_name(output.name + ".partial")
    samples: list[tuple[float, int, float]] = []  # (seconds, lines written, RSS MB)
    lines = 0
    offset = 0
    start = last_checkpoint = time.perf_counter()
    log = output.with_suffix(".log")
    with open(log, "w") as log_handle:
        process = subprocess.Popen(
            command, env=env, stdout=log_handle, stderr=subprocess.STDOUT, cwd=Path.cwd()
        )
        usage = None
        while usage is None:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:  # reaped here, so ru_maxrss is this child's own peak
                usage = rusage
                process.returncode = os.waitstatus_to_exitcode(status)
            for candidate in (partial, output):
                if candidate.exists():
                    with open(candidate, "rb") as handle:
                        handle.seek(offset)
                        chunk = handle.read()
                    offset += len(chunk)
                    lines += chunk.count(b"\n")
                    break
            rss = None if usage is not None else _rss_mb(process.pid)
            if rss is not None:
                samples.append((time.perf_counter() - start, lines, rss))
            if usage is None:
                if checkpoint and time.perf_counter() - last_checkpoint > checkpoint_every:
                    checkpoint(samples)
                    last_checkpoint = time.perf_counter()
                time.sleep(interval)
    wall = time.perf_counter() - start
    peak = usage.ru_maxrss / 1024
    if process.returncode not in (0, 3):  # 3: some inputs failed (written with an error)
        raise RuntimeError(f"predict failed ({process.returncode}); see {log}")
    if not output.exists():
        raise RuntimeError(f"predict wrote no {output}; see {log}")
    return {"wall_s": wall, "peak_rss_mb": peak, "samples": samples, "lines": lines}


MILESTONES = (1_000, 10_000, 25_000, 50_000, 100_000)
"""Line counts at which the RSS is reported (those a run reached)."""


def summarise(n: int, run: dict[str, Any]) -> dict[str, Any]:
    """Throughput, start-up time and RSS at 10/50/100 % of the lines written, from the samples.

    A run stopped early (``lines_written < n``) is summarised over the lines it wrote.
    """
    samples = run["samples"]
    written = run["lines"]
    first = next((t for t, lines, _ in samples if lines > 0), None)

    def at(count: float) -> tuple[float, float] | None:
        """(seconds, RSS MB) of the first sample with ``count`` lines written."""
        return next(((t, rss) for t, lines, rss in samples if lines >= count > 0), None)

    nan = (float("nan"), float("nan"))
    t10, rss10 = at(0.1 * written) or nan
    _, rss50 = at(0.5 * written) or nan
    t100, rss100 = at(written) or ((samples[-1][0], samples[-1][2]) if samples else nan)
    steady = 0.9 * written / (t100 - t10) if t100 > t10 else float("nan")
    milestones = {}
    for count in (*MILESTONES, n):
        hit = at(count)
        if hit is not None:
            milestones[str(count)] = round(hit[1], 1)
    return {
        "n": n,
        "lines_written": written,
        "complete": written >= n,
        "wall_s": round(run["wall_s"], 1),
        "startup_s": None if first is None else round(first, 1),
        "throughput_per_s": round(written / run["wall_s"], 1),
        "steady_throughput_per_s": round(steady, 1),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "rss_mb_at_10pct": round(rss10, 1),
        "rss_mb_at_50pct": round(rss50, 1),
        "rss_mb_at_100pct": round(rss100, 1),
        "rss_mb_at_lines": milestones,
        "rss_samples": [  # (seconds, lines written, RSS MB), at most ~200
            (round(t, 1), lines, round(rss, 1))
            for t, lines, rss in samples[:: max(1, len(samples) // 200)]
        ],
    }


def resummarise(path: Path) -> None:
    """Recompute the summaries of a results file from its stored samples (e.g. a stopped run)."""
    result = json.loads(path.read_text())
    for index, row in enumerate(result["runs"]):
        samples = [tuple(s) for s in row["rss_samples"]]
        run = {
            "samples": samples,
            "lines": max(row["lines_written"], samples[-1][1] if samples else 0),
            "wall_s": row["wall_s"],
            "peak_rss_mb": row["peak_rss_mb"],
        }
        kept = {k: v for k, v in row.items() if k not in summarise(row["n"], run)}
        result["runs"][index] = {**summarise(row["n"], run), **kept}
    path.write_text(json.dumps(result, indent=1))
    for row in result["runs"]:
        print({k: v for k, v in row.items() if k != "rss_samples"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--model", default=None, help="Default: the settings' default model.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--displacement", type=float, default=0.01, help="Å per component.")
    parser.add_argument("--interval", type=float, default=0.5, help="RSS sampling period (s).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/anisoscreen-bench-streaming"))
    parser.add_argument("--keep", action="store_true", help="Keep the inputs and outputs.")
    parser.add_argument("--output", type=Path, default=None, help="Result JSON path.")
    parser.add_argument(
        "--resummarise", type=Path, default=None, help="Only recompute this results file."
    )
    args = parser.parse_args()
    if args.resummarise:
        resummarise(args.resummarise)
        return

    from anisoscreen.settings import get_settings

    model = args.model or get_settings().model
    args.workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "model": model,
        "threads": args.threads,
        "seed": args.seed,
        "displacement_angstrom": args.displacement,
        "cpu_count": os.cpu_count(),
        "runs": [],
    }
    output_path = args.output or RESULTS / f"streaming_{'_'.join(map(str, args.sizes))}.json"
    output_path.parent.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        source = args.workdir / f"synthetic_{n}.jsonl.gz"
        predictions = args.workdir / f"predictions_{n}.jsonl"
        write_s = write_pool(source, n, args.seed, args.displacement)
        load_start = os.getloadavg()
        started = time.perf_counter()
        extra = {
            "write_s": round(write_s, 1),
            "input_mb": round(source.stat().st_size / 1e6, 1),
            "load_avg_start": [round(x, 2) for x in load_start],
        }

        def checkpoint(
            samples: list[tuple[float, int, float]],
            n: int = n,
            started: float = started,
            extra: dict[str, Any] = extra,
        ) -> None:
            """The run so far, marked incomplete, next to the finished sizes."""
            partial = {
                "wall_s": time.perf_counter() - started,
                "peak_rss_mb": max(rss for _, _, rss in samples),
                "samples": samples,
                "lines": samples[-1][1],
            }
            row = {**summarise(n, partial), **extra}
            row["load_avg_now"] = [round(x, 2) for x in os.getloadavg()]
            output_path.write_text(json.dumps({**result, "runs": [*result["runs"], row]}, indent=1))

        run = run_predict(source, predictions, model, args.threads, args.interval, checkpoint)
        load_end = os.getloadavg()
        row = summarise(n, run)
        row.update(extra, load_avg_end=[round(x, 2) for x in load_end])
        result["runs"].append(row)
        output_path.write_text(json.dumps(result, indent=1))  # checkpoint after every size
        if not args.keep:
            source.unlink()
            predictions.unlink(missing_ok=True)
        print(
            f"N={n:>7}  wall {row['wall_s']:>7.1f} s  start-up {row['startup_s']} s  "
            f"{row['throughput_per_s']:>6.1f}/s overall  {row['steady_throughput_per_s']:>6.1f}/s "
            f"steady  peak RSS {row['peak_rss_mb']:.0f} MB  RSS at 10/50/100 %: "
            f"{row['rss_mb_at_10pct']:.0f}/{row['rss_mb_at_50pct']:.0f}/"
            f"{row['rss_mb_at_100pct']:.0f} MB  load {load_start[0]:.2f}->{load_end[0]:.2f}",
            flush=True,
        )
    print(f"-> {output_path}")


if __name__ == "__main__":
    main()

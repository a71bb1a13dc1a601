"""The results store at scale: upsert and query times of N prediction documents.

    python benchmarks/bench_store.py --sizes 10000 100000 [1000000] [--backends embedded]
        [--workdir /tmp/anisoscreen-bench-store] [--repeats 3] [--serve]

For each backend and size N, a fresh store (``embedded``: the indexed SQLite engine under a
new data dir, exactly as ``anisoscreen screen`` opens it; ``monty``: the legacy montydb
store; ``memory``: maggma's mongomock ``MemoryStore``, as a reference) receives N synthetic
:class:`PredictionDoc` of realistic size (5-member ensemble with spreads, elements, band gap,
hull energy; a_r drawn so that a few per cent exceed 1.5) through
:meth:`ResultsStore.upsert`, the package's chunked write path. The documents are built in
blocks of 50,000 before each block is written, so the write times leave out building them
(``generate_s``). Timed, per size:

* ``upsert_s``: the N new documents;
* ``reupsert_unchanged_s``: the same N documents again (a resumed screening: all skipped);
* ``update_1k_s``: 1,000 of them with changed values (an incremental re-prediction);
* ``query_ar_min_s``: ``find_candidates`` with ``ar_min=1.5``, sorted by a_r, limit 50 (the
  ``anisoscreen query`` code path: store query, join with validations, sort);
* ``records_sorted_limit_s``: ``ResultsStore.records`` with the same filter, sorted by the
  store, limit 50 (raw store query);
* ``by_material_id_s``: one document by ``material_id``;
* ``ids_in_1k_s``: 1,000 documents by ``material_id $in`` (the resume check of a shard);
* ``keys_s``: every predicted ``material_id`` (what screening reads to skip done work);
* ``count_s``: the document count;
* ``disk_mb``: size of the embedded store on disk;
* ``serve_start_s``, ``first_page_s``, ``first_summary_s`` (``--serve``): ``anisoscreen
  serve`` on the store, to its first answer, then its first candidates page and statistics.

Query times are the median of ``--repeats`` runs (one run where a single run exceeds 20 s).
At 100,000 documents and more each row also lists the issue's targets (``targets``: value,
limit, met). Results print as a table and go to ``benchmarks/results/store_<sizes>.json``
after every size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen.query import CandidateQuery, find_candidates
from anisoscreen.schemas import PredictionDoc
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store import ResultsStore

RESULTS = Path(__file__).parent / "results"
BLOCK = 50_000
TARGETS_100K = {  # issue 25: at 100,000 predictions, seconds
    "by_material_id_s": 0.05,
    "records_sorted_limit_s": 0.3,
    "count_s": 0.2,
    "ids_in_1k_s": 0.5,
    "upsert_s": 30.0,
    "reupsert_unchanged_s": 10.0,
    "serve_start_s": 3.0,
}
TARGETS_1M = {"by_material_id_s": 0.05}
ELEMENTS = ["O", "Si", "Ti", "Zr", "Hf", "Al", "Mg", "Ca", "Sr", "Ba", "Nb", "Ta", "La", "Y"]


def prediction_docs(n: int, seed: int, start: int = 0) -> Iterator[PredictionDoc]:
    """``n`` synthetic predictions ``syn-<start>`` ... of a 5-member ensemble model."""
    rng = np.random.default_rng(seed)
    for index in range(start, start + n):
        eps = rng.uniform(2.0, 8.0)
        eigen = eps * np.array([1.0, 1.0 + rng.exponential(0.08), 1.0 + rng.exponential(0.15)])
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        tensor = rotation @ np.diag(eigen) @ rotation.T
        elements = sorted({"O", *rng.choice(ELEMENTS[1:], size=rng.integers(1, 4))})
        yield PredictionDoc.from_tensor(
            tensor,
            material_id=f"syn-{index:07d}",
            formula_pretty="".join(elements) + "3",
            model="anisonet-mp-v2",
            model_version="2.0.0",
            model_checksum="0" * 64,
            n_models=5,
            dielectric_tensor_std=np.abs(rng.normal(0.0, 0.1, size=(3, 3))).tolist(),
            eps_poly_std=float(abs(rng.normal(0.0, 0.2))),
            anisotropy_ratio_std=float(abs(rng.normal(0.0, 0.05))),
            elements=elements,
            nsites=int(rng.integers(2, 40)),
            energy_above_hull=float(rng.exponential(0.03)),
            band_gap=float(rng.uniform(0.5, 8.0)),
        )


def timed(action: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``action`` over ``repeats`` runs (one when a run takes > 20 s)."""
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = action()
        times.append(time.perf_counter() - start)
        if times[-1] > 20:
            break
    return statistics.median(times), value


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def upsert_blocks(results: ResultsStore, n: int, seed: int, row: dict[str, Any], name: str) -> int:
    """Upsert ``n`` documents in blocks built beforehand; adds ``name`` and ``generate_s``."""
    written = 0
    row[name] = 0.0
    for first in range(0, n, BLOCK):
        start = time.perf_counter()
        docs = list(prediction_docs(min(BLOCK, n - first), seed + first, start=first))
        row["generate_s"] = row.get("generate_s", 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        written += results.upsert(docs)
        row[name] += time.perf_counter() - start
    return written


def _get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        response.read()
    return time.perf_counter() - start


def serve_start(settings: AnisoscreenSettings) -> dict[str, float]:
    """``anisoscreen serve`` on the store: seconds to its first answer, then first pages.

    ``serve_start_s``: from the process start to the first answer (``/api/runs``; the
    server reads its snapshot before it answers anything); ``first_page_s``: the first
    50-row candidates page after that; ``first_summary_s``: the store statistics after that.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "import sys; from anisoscreen.cli import main; sys.argv[0] = 'anisoscreen'; main()"
    args = ["serve", "--store", settings.store, "--data-dir", str(settings.data_dir)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/api"
        while time.perf_counter() - start < 300:
            try:
                _get(f"{base}/runs")
            except OSError:
                time.sleep(0.05)
                continue
            return {
                "serve_start_s": time.perf_counter() - start,
                "first_page_s": _get(f"{base}/candidates?limit=50"),
                "first_summary_s": _get(f"{base}/summary"),
            }
        raise RuntimeError("the server did not answer within 300 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(
    backend: str,
    n: int,
    workdir: Path,
    repeats: int,
    seed: int,
    upsert_only: bool = False,
    serve: bool = False,
) -> dict[str, Any]:
    """One fresh store of ``backend`` filled with ``n`` predictions; every timing above.

    ``upsert_only`` times the first upsert only, in chunks of 10 % of ``n`` (one
    ``upsert`` call each, as successive screening shards write), to show how the write time
    grows with the documents already stored.
    """
    data_dir = workdir / f"{backend}_{n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = AnisoscreenSettings(store=backend, data_dir=data_dir)
    row: dict[str, Any] = {"backend": backend, "n": n}
    with ResultsStore(settings) as results:
        if upsert_only:
            step = max(1, n // 10)
            row["upsert_chunk_s"] = []
            for first in range(0, n, step):
                start = time.perf_counter()
                results.upsert(prediction_docs(min(step, n - first), seed, start=first))
                row["upsert_chunk_s"].append(round(time.perf_counter() - start, 2))
            row["upsert_s"] = sum(row["upsert_chunk_s"])
            assert results.count("predictions") == n
            return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        written = upsert_blocks(results, n, seed, row, "upsert_s")
        assert written == n
        generated = row.pop("generate_s")
        upsert_blocks(results, n, seed, row, "reupsert_unchanged_s")
        row["generate_s"] = generated
        start = time.perf_counter()
        results.upsert(prediction_docs(min(1000, n), seed + 1))  # same ids, new values
        row["update_1k_s"] = time.perf_counter() - start
        assert results.count("predictions") == n

        query = CandidateQuery.build(ar_min=1.5, limit=50)
        row["query_ar_min_s"], rows = timed(lambda: find_candidates(results, query), repeats)
        row["query_ar_min_rows"] = len(rows)
        row["query_ar_min_matches"] = results.count(
            "predictions", {"anisotropy_ratio": {"$gte": 1.5}}
        )
        row["records_sorted_limit_s"], _ = timed(
            lambda: list(
                results.records(
                    "predictions",
                    {"anisotropy_ratio": {"$gte": 1.5}},
                    sort={"anisotropy_ratio": -1},
                    limit=50,
                )
            ),
            repeats,
        )
        target = f"syn-{n // 2:07d}"
        row["by_material_id_s"], found = timed(
            lambda: results.query(PredictionDoc, {"material_id": target}), repeats
        )
        assert len(found) == 1
        ids = [f"syn-{i:07d}" for i in range(0, n, max(1, n // 1000))][:1000]
        row["ids_in_1k_s"], _ = timed(
            lambda: list(
                results.records("predictions", {"material_id": {"$in": ids}}, ["material_id"])
            ),
            repeats,
        )
        row["keys_s"], keys = timed(lambda: results.keys(PredictionDoc, "material_id"), repeats)
        assert len(keys) == n
        row["count_s"], _ = timed(lambda: results.count("predictions"), repeats)
        if serve:
            results.close()
            row.update(serve_start(settings))
    row["disk_mb"] = folder_mb(data_dir) if backend in ("embedded", "monty") else None
    targets = TARGETS_1M if n >= 1_000_000 else TARGETS_100K if n >= 100_000 else {}
    if targets:
        row["targets"] = {
            name: {"value": round(row[name], 4), "limit": limit, "met": row[name] < limit}
            for name, limit in targets.items()
            if name in row
        }
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backends", nargs="+", default=["embedded"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/anisoscreen-bench-store"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="Keep the store folders.")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--upsert-only", action="store_true", help="Time the first upsert only, in 10 chunks."
    )
    parser.add_argument(
        "--serve", action="store_true", help="Also time `anisoscreen serve` to its first answer."
    )
    args = parser.parse_args()

    suffix = "_upsert" if args.upsert_only else ""
    output = args.output or RESULTS / f"store_{'_'.join(map(str, args.sizes))}{suffix}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        for backend in args.backends:
            row = measure(
                backend, n, args.workdir, args.repeats, args.seed, args.upsert_only, args.serve
            )
            rows.append(row)
            output.write_text(json.dumps({"runs": rows}, indent=1))
            if not args.keep:
                shutil.rmtree(args.workdir / f"{backend}_{n}", ignore_errors=True)
            if args.upsert_only:
                print(
                    f"{backend:>6} N={n:>7}  upsert {row['upsert_s']:8.2f} s  by tenths: "
                    f"{row['upsert_chunk_s']}",
                    flush=True,
                )
                continue
            print(
                f"{backend:>6} N={n:>7}  upsert {row['upsert_s']:8.2f} s  "
                f"re-upsert {row['reupsert_unchanged_s']:7.2f} s  "
                f"update 1k {row['update_1k_s']:6.2f} s  "
                f"query a_r>=1.5 top 50 {row['query_ar_min_s']:7.3f} s  "
                f"sorted records {row['records_sorted_limit_s']:7.3f} s  "
                f"by id {row['by_material_id_s']:7.3f} s  $in 1k {row['ids_in_1k_s']:7.3f} s  "
                f"keys {row['keys_s']:7.3f} s  count {row['count_s']:6.3f} s  "
                f"disk {row['disk_mb']} MB  serve {row.get('serve_start_s', '-')} s "
                f"(first page {row.get('first_page_s', '-')} s, "
                f"summary {row.get('first_summary_s', '-')} s)",
                flush=True,
            )
            for name, target in row.get("targets", {}).items():
                value, limit, met = target["value"], target["limit"], target["met"]
                print(f"    {name:<24} {value:9.4f} < {limit:g}  {met}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()

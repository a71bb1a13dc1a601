"""Candidate embedded engines side by side, on the same N prediction documents.

    python benchmarks/bench_store_engines.py [--n 100000] [--engines sqlite duckdb]

The engines the issue named, each used the way the package would use it:

* ``sqlite``: the package's :class:`~anisoscreen.store.sqlite.SQLiteStore` (stdlib sqlite3,
  JSON text per document, expression indexes on ``json_extract``);
* ``duckdb`` (optional, ``pip install duckdb``): a table with the document as JSON and the
  queried fields as typed columns, an ART index on the key, ``INSERT OR REPLACE``.

Timed: inserting N documents (already built), one document by key, ``a_r >= 1.5`` top 50,
a count, 1,000 ids by ``IN``; the disk size. Query times are the median of ``--repeats``.
Results go to ``benchmarks/results/store_engines_<n>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_store import RESULTS, folder_mb, prediction_docs  # noqa: E402

from anisoscreen.store.codec import encode  # noqa: E402
from anisoscreen.store.layout import INDEXES  # noqa: E402
from anisoscreen.store.sqlite import SQLiteStore  # noqa: E402


def median_time(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_sqlite(records: list[dict[str, Any]], folder: Path, repeats: int) -> dict[str, Any]:
    store = SQLiteStore(
        str(folder / "s.sqlite"),
        "predictions",
        key="material_id",
        unique_key=["material_id", "model"],
        indexes=INDEXES["predictions"],
    )
    store.connect()
    start = time.perf_counter()
    for first in range(0, len(records), 500):
        store.upsert_records(records[first : first + 500])
    row: dict[str, Any] = {"insert_s": time.perf_counter() - start}
    target = records[len(records) // 2]["material_id"]
    ids = [r["material_id"] for r in records[:: max(1, len(records) // 1000)]][:1000]
    row["by_key_s"] = median_time(lambda: list(store.query({"material_id": target})), repeats)
    row["top50_s"] = median_time(
        lambda: list(
            store.query(
                {"anisotropy_ratio": {"$gte": 1.5}}, sort={"anisotropy_ratio": -1}, limit=50
            )
        ),
        repeats,
    )
    row["count_s"] = median_time(store.count, repeats)
    row["in_1k_s"] = median_time(lambda: list(store.query({"material_id": {"$in": ids}})), repeats)
    store.close()
    row["disk_mb"] = folder_mb(folder)
    return row


def bench_duckdb(records: list[dict[str, Any]], folder: Path, repeats: int) -> dict[str, Any]:
    import duckdb

    connection = duckdb.connect(str(folder / "d.duckdb"))
    connection.execute(
        "CREATE TABLE predictions (material_id VARCHAR, model VARCHAR, anisotropy_ratio DOUBLE, "
        "doc JSON, PRIMARY KEY (material_id, model))"
    )
    connection.execute("CREATE INDEX ar ON predictions (anisotropy_ratio)")
    start = time.perf_counter()
    for first in range(0, len(records), 500):
        chunk = records[first : first + 500]
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?)",
            [
                (r["material_id"], r["model"], r["anisotropy_ratio"], encode(r).decode())
                for r in chunk
            ],
        )
        connection.execute("COMMIT")
    row: dict[str, Any] = {"insert_s": time.perf_counter() - start}
    target = records[len(records) // 2]["material_id"]
    ids = [r["material_id"] for r in records[:: max(1, len(records) // 1000)]][:1000]

    def fetch(sql: str, params: list[Any]) -> list:
        return [json.loads(doc) for (doc,) in connection.execute(sql, params).fetchall()]

    row["by_key_s"] = median_time(
        lambda: fetch("SELECT doc FROM predictions WHERE material_id = ?", [target]), repeats
    )
    row["top50_s"] = median_time(
        lambda: fetch(
            "SELECT doc FROM predictions WHERE anisotropy_ratio >= ? "
            "ORDER BY anisotropy_ratio DESC LIMIT 50",
            [1.5],
        ),
        repeats,
    )
    row["count_s"] = median_time(
        lambda: connection.execute("SELECT count(*) FROM predictions").fetchone(), repeats
    )
    row["in_1k_s"] = median_time(
        lambda: fetch(
            f"SELECT doc FROM predictions WHERE material_id IN ({', '.join('?' * len(ids))})", ids
        ),
        repeats,
    )
    connection.close()
    row["disk_mb"] = folder_mb(folder)
    return row


ENGINES = {"sqlite": bench_sqlite, "duckdb": bench_duckdb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/anisoscreen-bench-engines"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    records = [doc.store_dict() for doc in prediction_docs(args.n, 0)]
    rows = []
    for engine in args.engines:
        folder = args.workdir / engine
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        row = {"engine": engine, "n": args.n, **ENGINES[engine](records, folder, args.repeats)}
        row = {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
        rows.append(row)
        print(row, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    output = RESULTS / f"store_engines_{args.n}.json"
    output.write_text(json.dumps({"runs": rows}, indent=1))
    print(f"-> {output}")


if __name__ == "__main__":
    main()

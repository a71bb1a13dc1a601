"""Rebuild the package's bundled demo pool and known-dielectric id list from ../shared.

    python workflows/build_bundled_pool.py [--size 300] [--seed 2025]

Writes anisoscreen/data/bundled_candidates.json.gz (a seeded random sample of the shared
Materials Project oxide pool, MP summary-document shape) and
anisoscreen/data/mp_dielectric_ids.txt.gz (the ids of MP materials with DFPT dielectric data).
Materials Project data: CC BY 4.0.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

import numpy as np

from anisoscreen.settings import get_settings

DATA = Path(__file__).resolve().parents[1] / "anisoscreen" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    shared = get_settings().shared / "data"

    with gzip.open(shared / "mp_candidates_oxides.json.gz", "rt") as handle:
        pool = json.load(handle)
    pick = np.sort(np.random.default_rng(args.seed).choice(len(pool), args.size, replace=False))
    sample = [pool[i] for i in pick]
    with gzip.GzipFile(DATA / "bundled_candidates.json.gz", "wb", mtime=0) as handle:
        handle.write(json.dumps(sample, separators=(",", ":")).encode())

    with open(shared / "mp_dielectric_ids.csv") as handle:
        ids = sorted({row["material_id"] for row in csv.DictReader(handle)})
    with gzip.GzipFile(DATA / "mp_dielectric_ids.txt.gz", "wb", mtime=0) as handle:
        handle.write(("\n".join(ids) + "\n").encode())
    print(f"{len(sample)} bundled candidates, {len(ids)} known dielectric ids -> {DATA}")


if __name__ == "__main__":
    main()

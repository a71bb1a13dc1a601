"""Server-side time of the results browser on a 3,000-candidate store (target: < 300 ms a page).

    python benchmarks/bench_web.py [--n 3000] [--store embedded] [--repeats 20]

Fills a fresh store (the embedded SQLite store by default, in a temporary data folder) with ``--n``
real structures of the shared MP oxide pool as candidates, one prediction each (seeded random
symmetric tensors, dimensionalities and crystal systems, so a_r filters and sorts have work to
do) and a completed DFPT validation for every tenth, then times, in-process through FastAPI's
``TestClient`` (no network, the time the server spends), with one warm-up request:

* ``GET /api/candidates`` (a 50-row page sorted by a_r) and sorted by ``eps_poly`` on page 10;
* ``GET /candidates`` (the HTML table page, 50 rows);
* the same with a new filter combination on every request (``ar_min=1.001``, ``1.002``, ...
  with element, dimensionality and sort changes), so the filter, join and sort of all rows
  run each time rather than coming from the per-snapshot cache of query results;
* ``GET /materials/{id}`` (one material page);
* the start-up (the app reads the store before it serves) and the first request after it;
* new filters while the store is re-read in a background thread.

Median, 95th percentile and maximum of ``--repeats`` requests print as JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ELEMENTS = ("O", "Ti", "Ba", "Na", "K", "Zn", "Mg", "Li")
SORTS = ("ar", "dft_ar", "eps_poly", "band_gap", "energy_above_hull", "formula", "fom")
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "hexagonal", "cubic")


def fill_store(results, n: int, shared: Path, seed: int = 0) -> list[str]:
    """Write ``n`` candidates, predictions and every tenth a validation; returns the ids."""
    from pymatgen.core import Structure

    from anisoscreen import tensor as tmath
    from anisoscreen.schemas import CandidateDoc, PredictionDoc, ValidationDoc, ValidationState

    with gzip.open(shared / "data" / "mp_candidates_oxides.json.gz", "rt") as handle:
        entries = json.load(handle)[:n]
    rng = np.random.default_rng(seed)
    candidates, predictions, validations = [], [], []
    for i, entry in enumerate(entries):
        structure = Structure.from_dict(entry["structure"])
        candidate = CandidateDoc.from_structure(
            structure,
            source="bench",
            material_id=entry["material_id"],
            energy_above_hull=entry.get("energy_above_hull"),
            band_gap=entry.get("band_gap"),
        )
        candidates.append(candidate)
        diagonal = rng.uniform(2.0, 6.0, 3) * np.array([1.0, 1.0, rng.uniform(1.0, 4.0)])
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        tensor = rotation @ np.diag(diagonal) @ rotation.T
        predictions.append(
            PredictionDoc.from_tensor(
                tensor,
                material_id=candidate.material_id,
                formula_pretty=candidate.formula_pretty,
                model="bench-model",
                model_version="1.0",
                model_checksum="0" * 64,
                dielectric_tensor_std=(0.05 * np.abs(tensor)).tolist(),
                dimensionality=int(rng.integers(0, 4)),
                crystal_system=CRYSTAL_SYSTEMS[i % len(CRYSTAL_SYSTEMS)],
                elements=candidate.elements,
                nsites=candidate.nsites,
                energy_above_hull=candidate.energy_above_hull,
                band_gap=candidate.band_gap,
            )
        )
        if i % 10 == 0:
            dft = tmath.summarize(tensor * rng.uniform(0.9, 1.1))
            validations.append(  # with the summary values the DFPT parser stores
                ValidationDoc(
                    material_id=candidate.material_id,
                    formula_pretty=candidate.formula_pretty,
                    job_uuid=f"bench-{i}",
                    state=ValidationState.COMPLETED,
                    epsilon_electronic=dft.tensor.tolist(),
                    eigenvalues=dft.eigenvalues.tolist(),
                    eps_poly=dft.eps_poly,
                    anisotropy_ratio=dft.anisotropy_ratio,
                )
            )
    results.upsert(candidates)
    results.upsert(predictions)
    results.upsert(validations)
    return [c.material_id for c in candidates]


def _count_a_write(settings) -> None:
    """Advance the embedded store's write counter (as an upsert does), nothing else."""
    from anisoscreen.store import ResultsStore

    with ResultsStore(settings) as results:
        store = results.store("predictions")
        with store._transaction() as connection:
            store._advance(connection)


def _time(client, url: str, repeats: int, before=None) -> dict[str, float]:
    """Time ``url``; a ``{i}`` in it is replaced by the repeat number (a new query each time).

    ``{dim}``, ``{element}`` and ``{sort}`` cycle through dimensionalities, elements and sort
    keys with the repeat number, so that each request is a new filter combination.
    """

    def fill(i: int) -> str:
        return url.format(
            i=i,
            dim=i % 4,
            element=ELEMENTS[i % len(ELEMENTS)],
            sort=SORTS[i % len(SORTS)],
        )

    client.get(fill(0)).raise_for_status()  # warm-up
    times = []
    for i in range(1, repeats + 1):
        if before is not None:
            before()
        start = time.perf_counter()
        response = client.get(fill(i))
        times.append(1000 * (time.perf_counter() - start))
        response.raise_for_status()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
        "max_ms": round(max(times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="Candidates in the store.")
    parser.add_argument("--store", default="embedded", help="Store backend (embedded or memory).")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="Keep the store in this folder and reuse it when it holds --n candidates "
        "(default: a temporary folder).",
    )
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from anisoscreen.schemas import PredictionDoc
    from anisoscreen.settings import get_settings
    from anisoscreen.store import ResultsStore
    from anisoscreen.web import create_app

    shared = Path(os.environ.get("ANISOSCREEN_SHARED", Path(__file__).parents[2] / "shared"))
    with tempfile.TemporaryDirectory(prefix="anisoscreen-bench-web-") as tmp:
        data_dir = args.data_dir if args.data_dir and args.store != "memory" else Path(tmp)
        settings = get_settings(store=args.store, data_dir=data_dir)
        results = ResultsStore(settings)
        start = time.perf_counter()
        ids = sorted(results.keys(PredictionDoc, "material_id"))
        if len(ids) != args.n:
            ids = fill_store(results, args.n, shared)
        fill_s = time.perf_counter() - start
        # no snapshot re-read during the run: its cost is startup_s
        app = create_app(
            settings, results=results if args.store == "memory" else None, refresh_s=1e9
        )
        report: dict[str, object] = {"n_candidates": len(ids), "store": args.store}
        report["fill_store_s"] = round(fill_s, 1)
        start = time.perf_counter()
        with TestClient(app) as client:  # start-up: the app reads the store before it serves
            report["startup_s"] = round(time.perf_counter() - start, 2)
            start = time.perf_counter()
            client.get("/api/candidates?ar_min=1.5&elements=O&limit=50").raise_for_status()
            report["first_request_ms"] = round(1000 * (time.perf_counter() - start), 1)
            urls = {
                "api_page": "/api/candidates?limit=50",
                "api_page_10_by_eps_poly": "/api/candidates?sort=eps_poly&skip=450&limit=50",
                "html_page": "/candidates?limit=50",
                # a different filter every request: filter, join and sort all 3,000 rows anew
                "api_new_ar_filter": "/api/candidates?ar_min=1.{i:03d}&limit=50",
                "api_new_filter_sort": "/api/candidates?ar_max=9.{i:03d}&sort={sort}&limit=50",
                "api_new_filter_combination": "/api/candidates?ar_min=1.{i:03d}"
                "&dimensionality={dim}&elements={element}&sort={sort}&skip=50&limit=50",
                "api_new_filter_predictions": "/api/predictions?ar_min=1.{i:03d}&limit=50",
                "html_new_filter": "/candidates?ar_min=1.{i:03d}&elements={element}&limit=50",
                "html_new_filter_sort": "/candidates?ar_min=1.{i:03d}&exclude_elements="
                "{element}&sort={sort}&descending=false&limit=50",
                "material_page": "/materials/" + ids[len(ids) // 2],
            }
            for name, url in urls.items():
                report[name] = _time(client, url, args.repeats)
            # the store re-read in a background thread all the time (requests keep the old
            # snapshot meanwhile): the cost of sharing the interpreter with the re-read
            # (each request counts a write on the embedded store, so that it is re-read again)
            view = app.state.view
            view.refresh_s, view.sync_load_s = 0.0, -1.0
            report["api_new_filter_during_reread"] = _time(
                client,
                "/api/candidates?ar_min=2.{i:03d}&elements={element}&limit=50",
                args.repeats,
                before=(lambda: _count_a_write(settings)) if args.store == "embedded" else None,
            )
        results.close()
    report["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

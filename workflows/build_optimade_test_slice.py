"""Build ``tests/data/optimade_oxides_slice.jsonl.gz``: OPTIMADE entries for the test server.

The first ``--n`` entries of the shared MP oxide pool (``mp_candidates_oxides.json.gz``), each
converted to an OPTIMADE ``structures`` entry with optimade-python-tools' adapter, carrying the
pool's energy above hull and band gap as provider fields (served by the reference server as
``_exmpl_energy_above_hull`` and ``_exmpl_band_gap``), plus one partially occupied copy of the
first entry (``structure_features = ["disorder"]``) so that the disorder filter has something
to remove. The file is the JSON-lines format the reference server's ``insert_from_jsonl`` reads.

    python workflows/build_optimade_test_slice.py --n 150
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from optimade.adapters import Structure as OptimadeStructure
from pymatgen.core import Structure

from anisoscreen.settings import get_settings

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "optimade_oxides_slice.jsonl.gz"
LAST_MODIFIED = {"$date": "2025-01-01T00:00:00Z"}


def optimade_entry(doc: dict, structure: Structure, entry_id: str) -> dict:
    """One OPTIMADE ``structures`` entry (JSON lines row) of a pool document."""
    entry = OptimadeStructure.ingest_from(structure).as_dict
    attributes = entry["attributes"]
    attributes.update(
        immutable_id=entry_id,
        last_modified=LAST_MODIFIED,
        energy_above_hull=doc["energy_above_hull"],
        band_gap=doc["band_gap"],
    )
    return {"id": entry_id, "type": "structures", "attributes": attributes}


def partially_occupied(row: dict) -> dict:
    """A copy of ``row`` whose first site is half occupied (OPTIMADE's ``disorder`` feature)."""
    row = json.loads(json.dumps(row))
    attributes = row["attributes"]
    symbol = attributes["species_at_sites"][0]
    attributes["species"].append(
        {
            "name": f"{symbol}_half",
            "chemical_symbols": [symbol, "vacancy"],
            "concentration": [0.5, 0.5],
            "mass": None,
            "original_name": None,
            "attached": None,
            "nattached": None,
        }
    )
    attributes["species_at_sites"][0] = f"{symbol}_half"
    attributes["structure_features"] = ["disorder"]
    row["id"] = attributes["immutable_id"] = row["id"] + "-disordered"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=150)
    args = parser.parse_args()
    pool = get_settings().shared / "data" / "mp_candidates_oxides.json.gz"
    with gzip.open(pool, "rt") as handle:
        docs = json.load(handle)[: args.n]
    rows = [optimade_entry(d, Structure.from_dict(d["structure"]), d["material_id"]) for d in docs]
    rows.append(partially_occupied(rows[0]))
    header = {"x-optimade": {"meta": {"api_version": "1.1.0"}}}
    with gzip.open(OUTPUT, "wt") as handle:
        handle.write(json.dumps(header) + "\n")
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    print(f"{len(rows)} entries -> {OUTPUT}")


if __name__ == "__main__":
    main()

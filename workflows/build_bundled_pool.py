"""Rebuild the package's bundled demo pool and known-dielectric id list from ../shared.

    python workflows/build_bundled_pool.py [--size 300] [--seed 2025] [--high 20]
        [--held-out 20] [--predictions pool_ar.json]

Writes anisoscreen/data/bundled_candidates.json.gz: a stratified, seeded sample of the shared
Materials Project oxide pool (MP summary-document shape) that shows what the tool is for:
``--high`` structures the shipped model predicts with a_r > 2, ``--held-out`` materials with
MP DFPT data that the model never trained on (so the demo's parity plot is honest), and
ordinary ones for the rest. Predictions are made with the shipped model (or read from
``--predictions``, a JSON ``{material_id: a_r}``).

Also writes anisoscreen/data/bundled_dfpt.json.gz (the shared MP DFPT results of the pool's
known dielectrics, with the models whose training split holds each) and
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

from anisoscreen.model.checkpoint import resolve_model_path
from anisoscreen.settings import get_settings
from anisoscreen.validation.imports import read_json_records, training_split_ids

DATA = Path(__file__).resolve().parents[1] / "anisoscreen" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--high", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=20)
    parser.add_argument("--predictions", type=Path, default=None)
    parser.add_argument("--model", default="anisonet-mp-v2")
    args = parser.parse_args()
    settings = get_settings()
    shared = settings.shared / "data"

    with gzip.open(shared / "mp_candidates_oxides.json.gz", "rt") as handle:
        pool = json.load(handle)
    ratios = _pool_ratios(pool, args.predictions, args.model)
    records = read_json_records(shared / "mp_dielectric_tensors.json.gz")
    dfpt = {r["material_id"]: r for r in records}
    model_dir = resolve_model_path(args.model).parent
    train = training_split_ids(model_dir, settings.shared)

    rng = np.random.default_rng(args.seed)
    high = [i for i, d in enumerate(pool) if (ratios.get(d["material_id"]) or 0) > 2.0]
    held = [
        i
        for i, d in enumerate(pool)
        if d["material_id"] in dfpt and d["material_id"] not in train and i not in set(high)
    ]
    chosen = set(rng.choice(high, min(args.high, len(high)), replace=False).tolist())
    chosen |= set(rng.choice(held, min(args.held_out, len(held)), replace=False).tolist())
    rest = [i for i in range(len(pool)) if i not in chosen]
    chosen |= set(rng.choice(rest, args.size - len(chosen), replace=False).tolist())
    sample = [pool[i] for i in sorted(chosen)]
    with gzip.GzipFile(DATA / "bundled_candidates.json.gz", "wb", mtime=0) as handle:
        handle.write(json.dumps(sample, separators=(",", ":")).encode())

    known = [
        {
            "material_id": d["material_id"],
            "formula": dfpt[d["material_id"]].get("formula", d.get("formula_pretty")),
            "eps_electronic": dfpt[d["material_id"]]["eps_electronic"],
            "eps_ionic": dfpt[d["material_id"]].get("eps_ionic"),
            "source": dfpt[d["material_id"]].get("source"),
            "in_training_split": [args.model] if d["material_id"] in train else [],
        }
        for d in sample
        if d["material_id"] in dfpt
    ]
    with gzip.GzipFile(DATA / "bundled_dfpt.json.gz", "wb", mtime=0) as handle:
        handle.write(json.dumps(known, separators=(",", ":")).encode())

    with open(shared / "mp_dielectric_ids.csv") as handle:
        ids = sorted({row["material_id"] for row in csv.DictReader(handle)})
    with gzip.GzipFile(DATA / "mp_dielectric_ids.txt.gz", "wb", mtime=0) as handle:
        handle.write(("\n".join(ids) + "\n").encode())
    n_high = sum((ratios.get(d["material_id"]) or 0) > 2 for d in sample)
    n_held = sum(not k["in_training_split"] for k in known)
    print(
        f"{len(sample)} bundled candidates ({n_high} with predicted a_r > 2), {len(known)} with "
        f"MP DFPT results ({n_held} outside the training split), {len(ids)} known dielectric "
        f"ids -> {DATA}"
    )


def _pool_ratios(pool: list[dict], cached: Path | None, model: str) -> dict[str, float | None]:
    """Predicted a_r of every pool structure (from ``cached`` when given)."""
    if cached is not None:
        return json.loads(cached.read_text())
    from pymatgen.core import Structure

    from anisoscreen.model.inference import Predictor
    from anisoscreen.structures_io import StructureRecord

    predictor = Predictor.load(model, device="cpu")
    records = (
        StructureRecord(d["material_id"], Structure.from_dict(d["structure"]), "pool") for d in pool
    )
    return {
        doc.material_id: getattr(doc, "anisotropy_ratio", None)
        for doc in predictor.predict(records)
    }


if __name__ == "__main__":
    main()

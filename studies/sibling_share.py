"""How many paddings of one layer stack a pool holds, and how much of a model's error is there.

    python studies/sibling_share.py [--model runs/ood/start-layered/model.pt] \
        [--output studies/results/sibling_share.json]

For the layered out-of-distribution pool (``runs/ood/pool-layered.json.gz``, written by
``benchmarks/bench_campaign.py --ood layered``): its sibling groups
(:func:`~anisoscreen.campaign.siblings.sibling_table`), the structures in them, and the share
of the starting model's absolute a_r error (ensemble mean) they hold. For two real pools,
the shared MP oxide candidates and the cleaned training set: their stacks and sibling groups.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from _study_io import save_study
from pymatgen.core import Structure

from anisoscreen import tensor as tmath
from anisoscreen.campaign.siblings import sibling_table
from anisoscreen.campaign.simulate import SimulationConfig, load_oracle, prepare_pool
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.training.dataset import clean_entries, load_entries
from anisoscreen.model.training.evaluate import predict_with_embeddings
from anisoscreen.screening.objectives import tensor_values
from anisoscreen.settings import get_settings


def _groups(structures: list[Structure], ids: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    table = sibling_table(structures)
    groups = table[:, 0]
    pairs = [
        [ids[i] for i in np.flatnonzero(groups == g)] for g in sorted(set(groups[groups >= 0]))
    ]
    return {
        "structures": len(structures),
        "stacks": int(np.isfinite(table[:, 1]).sum()),
        "sibling_groups": len(pairs),
        "in_groups": int((groups >= 0).sum()),
        "groups": pairs[:20],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/ood/start-layered/model.pt")
    parser.add_argument("--pool", type=Path, default=Path("runs/ood/pool-layered.json.gz"))
    parser.add_argument("--output", type=Path, default=Path("studies/results/sibling_share.json"))
    args = parser.parse_args()

    model = load_model(args.model, device="cpu")
    known = set(model.config.elements)
    oracle = [
        e
        for e in load_oracle(args.pool)
        if all(el.Z in known for el in e.structure.composition.elements)
    ]
    pool = prepare_pool(oracle, model, SimulationConfig(model=args.model))
    irreps, _ = predict_with_embeddings(model.networks, pool.graphs)
    predicted = tensor_values(tmath.irreps_to_tensor(irreps), "ar").mean(axis=0)
    error = np.abs(predicted - pool.truth)
    groups = pool.sibling_table()[:, 0]
    inside = groups >= 0
    layered = {
        "pool": str(args.pool),
        "model": args.model,
        "structures": len(error),
        "sibling_groups": len(set(groups[inside])),
        "in_groups": int(inside.sum()),
        "ar_mae": float(error.mean()),
        "error_share_in_groups": float(error[inside].sum() / error.sum()),
    }
    print(json.dumps(layered, indent=2))

    shared = get_settings().shared / "data"
    records = json.loads(gzip.decompress((shared / "mp_candidates_oxides.json.gz").read_bytes()))
    oxides = _groups(
        [Structure.from_dict(r["structure"]) for r in records],
        [str(r["material_id"]) for r in records],
    )
    entries, _ = clean_entries(load_entries(shared / "mp_dielectric_tensors.json.gz"))
    training = _groups([e.structure for e in entries], [e.material_id for e in entries])
    for name, found in (("MP oxide pool", oxides), ("training set", training)):
        print(
            f"{name}: {found['structures']} structures, {found['stacks']} stacks, "
            f"{found['sibling_groups']} sibling groups ({found['in_groups']} structures)"
        )
    save_study(
        {"layered_pool": layered, "mp_oxide_pool": oxides, "training_set": training},
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

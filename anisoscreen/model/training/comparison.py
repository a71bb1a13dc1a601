"""Compare trained models on the same splits.

Ensembles and single members, error slices, and the dilution of a layered crystal.

Read-out and loss studies train several variants over several seeds; this module evaluates
them all from one set of graphs (the data set is read and featurised once), so that every
variant is judged on exactly the same structures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from anisoscreen import tensor as tmath
from anisoscreen.model.atom_features import data_set_cache, featurizer_for
from anisoscreen.model.checkpoint import LoadedModel, load_model
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.model.training.error_slices import error_block, error_slices
from anisoscreen.model.training.evaluate import predict_irreps
from anisoscreen.model.training.train import prepare_graphs

__all__ = [
    "DILUTION_HEIGHTS",
    "LAMINATE_LAYERS",
    "ModelVariant",
    "compare_models",
    "dilution_series",
    "hbn_layer",
    "mos2_layer",
    "mote2_layer",
    "summary_rows",
]

DILUTION_HEIGHTS = (12.0, 15.0, 20.0, 30.0, 40.0)
"""Cell heights (angstrom) of the MoS2-layer dilution series."""


@dataclass
class ModelVariant:
    """One entry of a comparison: a model file and the members that form its ensemble.

    Parameters
    ----------
    label
        Name shown in tables.
    path
        Model file (or shipped model name).
    members
        0-based member indices forming the ensemble; ``None`` for all.
    """

    label: str
    path: str | Path
    members: Sequence[int] | None = None


def mos2_layer(c: float) -> Structure:
    """One MoS2 layer (a = 3.19 A, S-Mo-S +-1.565 A) in a hexagonal cell of height ``c``."""
    return _trilayer("Mo", "S", 3.19, 1.565, c)


def mote2_layer(c: float) -> Structure:
    """One 1H-MoTe2 layer (a = 3.52 A, Te-Mo-Te +-1.80 A) in a hexagonal cell of height ``c``."""
    return _trilayer("Mo", "Te", 3.52, 1.80, c)


def hbn_layer(c: float) -> Structure:
    """One flat hexagonal BN layer (a = 2.50 A) in a hexagonal cell of height ``c``."""
    return Structure(Lattice.hexagonal(2.50, c), ["B", "N"], [[0, 0, 0.5], [1 / 3, 2 / 3, 0.5]])


LAMINATE_LAYERS = {"MoS2": mos2_layer, "hBN": hbn_layer, "MoTe2": mote2_layer}
"""The layers of the laminate test: name -> builder of the layer in a cell of height c."""


def _trilayer(metal: str, chalcogen: str, a: float, half_height: float, c: float) -> Structure:
    """A trigonal-prismatic X-M-X layer centred in a hexagonal cell of height ``c``."""
    half = half_height / c
    return Structure(
        Lattice.hexagonal(a, c),
        [metal, chalcogen, chalcogen],
        [[0, 0, 0.5], [1 / 3, 2 / 3, 0.5 + half], [1 / 3, 2 / 3, 0.5 - half]],
    )


@torch.inference_mode()
def dilution_series(
    networks: Sequence[AnisoNet], heights: Sequence[float] = DILUTION_HEIGHTS
) -> dict[str, Any]:
    """In-plane and out-of-plane eps of a MoS2 layer at each cell height (ensemble mean).

    Returns the two components per height and the in-plane ``(eps - 1)`` ratio between
    40 and 20 A (physics: 0.5, since eps - 1 falls like 1/c).
    """
    structures = [mos2_layer(c) for c in heights]
    graphs = [structure_to_graph(s, allow_isolated=True) for s in structures]
    features = networks[0].config.atom_features
    if features:  # a model on pretrained features gets them for the layers too
        for graph, value in zip(graphs, featurizer_for(features)(structures), strict=True):
            graph.atom_features = value
    batch = collate(graphs)
    eps = np.mean([net.predict_tensor(batch).double().cpu().numpy() for net in networks], axis=0)
    in_plane, out_of_plane = eps[:, 0, 0], eps[:, 2, 2]
    result: dict[str, Any] = {
        "heights": list(heights),
        "eps_in_plane": in_plane.round(4).tolist(),
        "eps_out_of_plane": out_of_plane.round(4).tolist(),
    }
    if 20.0 in heights and 40.0 in heights:
        i20, i40 = list(heights).index(20.0), list(heights).index(40.0)
        result["in_plane_ratio_40_20"] = float((in_plane[i40] - 1.0) / (in_plane[i20] - 1.0))
    return result


def _members(loaded: LoadedModel, members: Sequence[int] | None) -> list[AnisoNet]:
    return list(loaded.networks) if members is None else [loaded.networks[k] for k in members]


def compare_models(
    variants: Sequence[ModelVariant],
    data_path: str | Path,
    split_seed: int = 42,
    subsets: Sequence[str] = ("validation", "test"),
    dimensionality: Callable[[Structure], int | None] | None = None,
) -> dict[str, Any]:
    """Metrics of every variant's ensemble and of each of its members, on each subset.

    The slices (:func:`~anisoscreen.model.training.error_slices.error_slices`) and the dilution
    series are computed for each ensemble on the union of ``subsets`` (all structures that played no
    part in training).

    Returns
    -------
    dict
        ``{label: {"ensemble": {subset: metrics}, "members": [{subset: metrics}, ...],
        "slices": ..., "dilution": ...}}``.
    """
    entries, _ = clean_entries(load_entries(data_path))
    split = random_split(len(entries), split_seed)
    chosen = {subset: [entries[i] for i in split[subset]] for subset in subsets}
    unseen = [e for subset in subsets for e in chosen[subset]]
    structures = [e.structure for e in unseen]
    dimensionalities = [dimensionality(s) for s in structures] if dimensionality else None
    reference = {
        subset: np.stack([tmath.symmetrize(e.eps_electronic) for e in chosen[subset]])
        for subset in subsets
    }
    graph_cache: dict[tuple[float, str | None], dict[str, list[Any]]] = {}
    result: dict[str, Any] = {}
    for variant in variants:
        loaded = load_model(variant.path)
        # graphs per cutoff and pretrained feature set (read from the data set's feature cache)
        key = (loaded.config.cutoff, loaded.config.atom_features)
        if key not in graph_cache:
            cache = data_set_cache(key[1], data_path) if key[1] else None
            graph_cache[key] = {
                s: prepare_graphs(chosen[s], key[0], key[1], cache) for s in subsets
            }
        networks = _members(loaded, variant.members)
        per_member = {
            subset: tmath.irreps_to_tensor(predict_irreps(networks, graph_cache[key][subset]))
            for subset in subsets
        }
        all_members = np.concatenate([per_member[s] for s in subsets], axis=1)
        result[variant.label] = {
            "model": f"{loaded.name} {loaded.version}",
            "members_used": list(variant.members or range(len(loaded.networks))),
            "ensemble": {s: error_block(per_member[s].mean(axis=0), reference[s]) for s in subsets},
            "members": [
                {s: error_block(per_member[s][k], reference[s]) for s in subsets}
                for k in range(len(networks))
            ],
            "slices": error_slices(
                all_members,
                np.concatenate([reference[s] for s in subsets]),
                structures,
                dimensionalities,
            ),
            "dilution": dilution_series(networks),
        }
    return result


def summary_rows(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per variant (ensemble and member spread) for tables and model cards."""
    rows = []
    for label, entry in comparison.items():
        val, test = entry["ensemble"]["validation"], entry["ensemble"]["test"]
        member_val = np.array(
            [[m["validation"]["eps_poly_mae"], m["validation"]["anisotropy_ratio_mae"]]
             for m in entry["members"]]
        )  # fmt: skip
        slices, dilution = entry["slices"], entry["dilution"]
        rows.append(
            {
                "label": label,
                "members": len(entry["members"]),
                "val_eps_poly": val["eps_poly_mae"],
                "val_ar": val["anisotropy_ratio_mae"],
                "member_val_eps_poly": member_val[:, 0].tolist(),
                "member_val_ar": member_val[:, 1].tolist(),
                "test_eps_poly": test["eps_poly_mae"],
                "test_ar": test["anisotropy_ratio_mae"],
                "test_tensor_mae": test["tensor_mae"],
                "layered_eps_poly": slices["layered_gap"].get("eps_poly_mae"),
                "layered_ar": slices["layered_gap"].get("anisotropy_ratio_mae"),
                "layered_n": slices["layered_gap"]["n"],
                "twod_eps_poly": slices.get("by_dimensionality", {})
                .get("2D", {})
                .get("eps_poly_mae"),
                "twod_ar": slices.get("by_dimensionality", {})
                .get("2D", {})
                .get("anisotropy_ratio_mae"),
                "tail_eps_poly": slices["eps_poly_tail"].get("eps_poly_mae"),
                "tail_ar": slices["eps_poly_tail"].get("anisotropy_ratio_mae"),
                "calibration": slices["calibration"],
                "dilution_eps_zz_40": dilution["eps_out_of_plane"][-1],
                "dilution_ratio": dilution.get("in_plane_ratio_40_20"),
            }
        )
    return rows

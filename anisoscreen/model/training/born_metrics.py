"""How well a model's Born-charge head predicts the DFPT charges of unseen structures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from anisoscreen.model.nn.graph import CrystalGraph, collate
from anisoscreen.model.nn.network import AnisoNet

__all__ = ["born_charge_metrics"]


def _element_means(
    structures: Sequence[Any], charges: Sequence[np.ndarray]
) -> dict[int, np.ndarray]:
    sums: dict[int, np.ndarray] = defaultdict(lambda: np.zeros((3, 3)))
    counts: dict[int, int] = defaultdict(int)
    for structure, born in zip(structures, charges, strict=True):
        for z, charge in zip(structure.atomic_numbers, born, strict=True):
            sums[z] += charge
            counts[z] += 1
    return {z: sums[z] / counts[z] for z in sums}


@torch.inference_mode()
def born_charge_metrics(
    networks: Sequence[AnisoNet],
    graphs: Sequence[CrystalGraph],
    born: Sequence[np.ndarray | None],
    structures: Sequence[Any],
    train_structures: Sequence[Any],
    train_born: Sequence[np.ndarray | None],
    device: torch.device,
    batch_size: int = 32,
) -> dict[str, Any]:
    """The ensemble's Born-charge MAE (e, per component) on the structures with DFPT charges.

    Next to it, two references: each site's element mean over the training structures with
    charges (zero for an element without any), and zero charges.

    Parameters
    ----------
    networks
        The ensemble members (with the Born head).
    graphs, born, structures
        The evaluated structures' graphs, DFPT charges (``None``: skipped) and structures.
    train_structures, train_born
        The training structures and their charges (for the element-mean reference).
    device
        Where the networks run.
    """
    kept = [k for k, b in enumerate(born) if b is not None and len(b) == graphs[k].num_nodes]
    means = _element_means(
        [s for s, b in zip(train_structures, train_born, strict=True) if b is not None],
        [b for b in train_born if b is not None],
    )
    predicted: list[np.ndarray] = []
    for start in range(0, len(kept), batch_size):
        batch = collate([graphs[k] for k in kept[start : start + batch_size]]).to(device)
        members = [net.eval().forward_with_born(batch)[1] for net in networks]
        predicted.append(torch.stack(members).mean(dim=0).double().cpu().numpy())
    if not kept:
        return {"n_structures": 0}
    reference = np.concatenate([np.asarray(born[k]) for k in kept])
    element_mean = np.stack(
        [means.get(z, np.zeros((3, 3))) for k in kept for z in structures[k].atomic_numbers]
    )
    prediction = np.concatenate(predicted)
    sums = np.abs(np.concatenate([np.asarray(born[k]).sum(axis=0) for k in kept]))
    return {
        "n_structures": len(kept),
        "n_sites": len(reference),
        "born_mae": float(np.abs(prediction - reference).mean()),
        "element_mean_mae": float(np.abs(element_mean - reference).mean()),
        "zero_mae": float(np.abs(reference).mean()),
        # the DFPT charges themselves break the sum rule by this much (per component, e)
        "dfpt_sum_rule_violation": float(sums.mean()),
    }

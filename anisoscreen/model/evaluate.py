"""Test-set metrics: MAE of eps_poly, of a_r and of the tensor components, per crystal system."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from anisoscreen import tensor as tmath
from anisoscreen.model.graph import CrystalGraph, collate

__all__ = ["crystal_systems", "metrics", "predict_irreps"]


@torch.inference_mode()
def predict_irreps(
    networks: Sequence[torch.nn.Module],
    graphs: Sequence[CrystalGraph],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """Irreps predictions of every network, shape (n_networks, n_graphs, 6)."""
    out = np.zeros((len(networks), len(graphs), 6))
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size]).to(device)
        for k, net in enumerate(networks):
            out[k, start : start + batch.num_graphs] = net(batch).double().cpu().numpy()
    return out


def crystal_systems(structures: Sequence[Any], symprec: float = 0.1) -> list[str]:
    """Crystal system of each structure (pymatgen's SpacegroupAnalyzer)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    systems = []
    for structure in structures:
        try:
            systems.append(SpacegroupAnalyzer(structure, symprec=symprec).get_crystal_system())
        except Exception:  # spglib failure on a pathological cell
            systems.append("unknown")
    return systems


def metrics(
    predicted: np.ndarray, reference: np.ndarray, systems: Sequence[str] | None = None
) -> dict[str, Any]:
    """MAEs between predicted and reference 3x3 tensors (shape (n, 3, 3)).

    Returns overall ``eps_poly_mae``, ``anisotropy_ratio_mae``, ``component_mae`` and, when
    ``systems`` is given, the same per crystal system under ``per_crystal_system``.
    """

    def _block(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
        eig_p, eig_r = tmath.eigenvalues(pred), tmath.eigenvalues(ref)
        ar_p = eig_p[:, -1] / np.clip(eig_p[:, 0], 1e-6, None)
        ar_r = eig_r[:, -1] / eig_r[:, 0]
        return {
            "n": int(len(pred)),
            "eps_poly_mae": float(np.mean(np.abs(eig_p.mean(1) - eig_r.mean(1)))),
            "anisotropy_ratio_mae": float(np.mean(np.abs(ar_p - ar_r))),
            "component_mae": float(np.mean(np.abs(tmath.symmetrize(pred) - tmath.symmetrize(ref)))),
        }

    result: dict[str, Any] = _block(predicted, reference)
    if systems is not None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, system in enumerate(systems):
            groups[system].append(i)
        result["per_crystal_system"] = {
            system: _block(predicted[idx], reference[idx]) for system, idx in sorted(groups.items())
        }
    return result

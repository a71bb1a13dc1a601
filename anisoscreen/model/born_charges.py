"""Born effective charges predicted by a model with a Born-charge head.

A model trained for its charges (``anisonet-mp-born``: ``TrainConfig.born_weight`` with
``selection="born"``) predicts one 3x3 tensor ``Z*_i,ab = dP_a / du_i,b`` per site, in units
of e. The head subtracts each structure's mean charge, so the acoustic sum rule
(``sum_i Z*_i = 0``) holds by construction, and an ensemble's mean keeps it. These are the
charges of route (b) of the ionic refine stage (:mod:`anisoscreen.screening.ionic_refine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import LoadedModel, load_model
from anisoscreen.model.nn.graph import GraphError, collate, structure_to_graph

__all__ = ["predict_born_charge_members", "predict_born_charges"]


def _loaded(model: str | Path | LoadedModel) -> LoadedModel:
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    if not loaded.config.born_head:
        raise AnisoscreenError(f"model {loaded.name} has no Born-charge head")
    return loaded


def predict_born_charges(
    model: str | Path | LoadedModel, structures: Sequence[Structure], batch_size: int = 32
) -> list[np.ndarray]:
    """The ensemble-mean Born charges (N_k, 3, 3) of each structure, in e, in site order.

    The mean of :func:`predict_born_charge_members` (same parameters and errors).
    """
    members = predict_born_charge_members(model, structures, batch_size)
    return [charges.mean(axis=0) for charges in members]


@torch.inference_mode()
def predict_born_charge_members(
    model: str | Path | LoadedModel, structures: Sequence[Structure], batch_size: int = 32
) -> list[np.ndarray]:
    """Each member's Born charges (M, N_k, 3, 3) of each structure, in e, in site order.

    Parameters
    ----------
    model
        A model name, a model file's path, or a loaded model; it must have the Born head.
    structures
        Ordered crystals made of the elements the model was trained on.
    batch_size
        Structures per forward pass.

    Raises
    ------
    AnisoscreenError
        The model has no Born head, a structure holds an element it never saw, or its graph
        cannot be built.
    """
    loaded = _loaded(model)
    known = set(loaded.config.elements)
    graphs = []
    for structure in structures:
        unseen = sorted({el.symbol for el in structure.composition.elements if el.Z not in known})
        if known and unseen:
            raise AnisoscreenError(
                f"{structure.composition.reduced_formula}: element(s) not seen in training "
                f"by {loaded.name}: {', '.join(unseen)}"
            )
        try:
            graphs.append(structure_to_graph(structure, loaded.config.cutoff, allow_isolated=True))
        except GraphError as exc:
            raise AnisoscreenError(f"{structure.composition.reduced_formula}: {exc}") from exc
    device = next(loaded.networks[0].parameters()).device
    charges: list[np.ndarray] = []
    for start in range(0, len(graphs), batch_size):
        chunk = graphs[start : start + batch_size]
        batch = collate(chunk).to(device)
        members = [net.eval().forward_with_born(batch)[1] for net in loaded.networks]
        stacked = torch.stack(members).double().cpu().numpy()
        offsets = np.cumsum([0, *(g.num_nodes for g in chunk)])
        charges += [stacked[:, a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return charges

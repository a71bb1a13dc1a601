"""Exfoliation augmentation: layered training entries pulled apart, labelled by the laminate law.

For every entry whose bonded components are all parallel 2D layers (the package's own
CrystalNN + Larsen tagging, :func:`anisoscreen.exfoliation.layer_stack`), copies with every
interlayer gap opened by ``delta`` (:data:`EXFOLIATION_DELTAS`) are made and labelled from the
entry's DFPT tensor with the laminate formulas (:func:`anisoscreen.exfoliation.laminate_tensor`),
taking the layer's own response as unchanged when isolated (good for van der Waals layers,
not for ionic ones). Copies inherit their parent's split, so training, validation and test
copies never mix; the test copies form the *exfoliated slice* that evaluation reports.

A stack whose layers interlock (corrugated layers whose heights overlap along the normal)
opens gaps narrower than ``delta``; the geometry the read-out measures then disagrees with
the label's filling fraction ``d / (d + m delta)``. Such entries are left out
(:data:`MAX_FRACTION_MISMATCH`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from anisoscreen.exfoliation import exfoliate, find_layer_stack, laminate_tensor
from anisoscreen.geometry import depolarisation_tensor
from anisoscreen.model.training.dataset import DielectricEntry

__all__ = [
    "EXFOLIATION_DELTAS",
    "MAX_FRACTION_MISMATCH",
    "ExfoliatedCopy",
    "exfoliated_copies",
    "exfoliated_graphs",
]

EXFOLIATION_DELTAS: tuple[float, ...] = (2.0, 4.0, 8.0, 12.0, 16.0)
"""Gap openings (angstrom) of the augmentation copies."""

MAX_FRACTION_MISMATCH = 0.15
"""Largest accepted difference, at the widest opening, between the label's filling fraction
and the one the read-out's geometry measures."""


@dataclass
class ExfoliatedCopy:
    """One exfoliated copy of a data-set entry.

    Attributes
    ----------
    parent
        Index of the entry it was made from.
    delta
        Opening of every interlayer gap (angstrom).
    fraction
        Filling fraction ``f`` of the label's laminate.
    structure
        The opened structure.
    eps_electronic
        Its laminate-law eps_inf (3x3).
    """

    parent: int
    delta: float
    fraction: float
    structure: Structure
    eps_electronic: np.ndarray


def _geometric_fraction(structure: Structure, normal: np.ndarray) -> float:
    """The filling fraction the read-out's depolarisation implies along ``normal``."""
    return 1.0 / (1.0 + float(normal @ depolarisation_tensor(structure) @ normal))


def exfoliated_copies(
    entries: Sequence[DielectricEntry],
    indices: Sequence[int],
    deltas: Sequence[float] = EXFOLIATION_DELTAS,
) -> dict[int, list[ExfoliatedCopy]]:
    """Exfoliated copies of the layered entries among ``indices``, keyed by entry index.

    Entries that are not stacks of parallel 2D layers, whose bonds cannot be found, or whose
    layers interlock (:data:`MAX_FRACTION_MISMATCH`) get no copies.
    """
    out: dict[int, list[ExfoliatedCopy]] = {}
    if not deltas:
        return out
    widest = max(deltas)
    for index in indices:
        entry = entries[int(index)]
        stack = find_layer_stack(entry.structure)
        if stack is None:  # not a stack, or CrystalNN failed: no copies
            continue
        opened = exfoliate(entry.structure, stack, widest)
        _, label_fraction = laminate_tensor(entry.tensor("electronic"), stack, widest)
        geometric = _geometric_fraction(opened, stack.normal)
        if abs(geometric - label_fraction) > MAX_FRACTION_MISMATCH:
            continue
        copies = []
        for delta in deltas:
            eps, fraction = laminate_tensor(entry.tensor("electronic"), stack, delta)
            copies.append(
                ExfoliatedCopy(
                    int(index),
                    float(delta),
                    fraction,
                    exfoliate(entry.structure, stack, delta),
                    eps,
                )
            )
        out[int(index)] = copies
    return out


def exfoliated_graphs(
    copies: Sequence[ExfoliatedCopy],
    entries: Sequence[DielectricEntry],
    cutoff: float,
    atom_features: str | None = None,
    feature_cache: str | Path | None = None,
) -> list:
    """The graphs of exfoliated copies, each with its parent entry's band gap.

    With ``atom_features`` (a model on pretrained features), each graph also gets that feature
    set of its copy, read from or added to ``feature_cache`` like the data set's own graphs
    (:func:`~anisoscreen.model.training.train.prepare_graphs`).
    """
    from anisoscreen.model.nn.graph import structure_to_graph

    graphs = [
        structure_to_graph(
            c.structure, cutoff, allow_isolated=True, band_gap=entries[c.parent].band_gap
        )
        for c in copies
    ]
    if atom_features:
        from anisoscreen.model.training.train import attach_atom_features

        attach_atom_features(graphs, [c.structure for c in copies], atom_features, feature_cache)
    return graphs

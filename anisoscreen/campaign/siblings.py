"""Labels carried by the laminate law to the other paddings of the same layer stack.

A pool can hold one stack of 2D layers several times with different vacuum between the
layers: a bulk van der Waals crystal and entries derived from 2D-material databases, or
the exfoliated copies of the out-of-distribution benchmark. Padding more vacuum onto a
laminate of layer and vacuum is again a laminate, so one DFT tensor of the stack gives the
others: with ``d`` the stacking period of the labelled cell and ``d'`` that of its sibling,
the sibling's tensor is the labelled one mixed with vacuum at filling fraction ``d / d'``
(parallel in the plane, series along the normal; :func:`carry`). MP's DFPT of MoSe2, WSe2
and MoS2 stacks 12-14 Å apart obeys this within 2 % (issue 23); it holds for van der Waals
layers and not for ionic ones, whose charge changes when they are separated.

Siblings are found from the structures alone (:func:`sibling_table`): both cells are stacks
of parallel 2D layers (:func:`~anisoscreen.exfoliation.find_layer_stack`) with the same
composition and layers per period, and opening or closing the gaps of one to the other's
period gives a structure that pymatgen's ``StructureMatcher`` matches to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pymatgen.core import Structure

from anisoscreen.exfoliation import exfoliate, find_layer_stack
from anisoscreen.geometry import laminate_mix

__all__ = ["SIBLING_TOLERANCES", "carried_values", "carry", "sibling_table"]

SIBLING_TOLERANCES = (0.02, 0.1, 1.0)
"""``StructureMatcher``'s ``ltol``, ``stol`` and ``angle_tol`` (degrees) for two paddings of
one stack, brought to one period: tighter than its defaults (0.2, 0.3, 5), which would take a
layer strained by 5 % in the plane for the same one."""


def sibling_table(structures: Sequence[Structure]) -> np.ndarray:
    """Per structure ``(group, period, n_x, n_y, n_z)``, shape ``(n, 5)``.

    ``group`` is equal for paddings of one layer stack and -1 for a structure with no
    sibling; ``period`` is the stacking period ``d_hkl`` (Å) and ``n`` the unit normal of
    the layers (NaN where the structure is no stack). Structures are compared within
    buckets of equal reduced formula, site count and layers per period; one joins the first
    group whose representative it matches once its gaps are opened (or closed) to the
    representative's period.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    ltol, stol, angle_tol = SIBLING_TOLERANCES
    matcher = StructureMatcher(
        ltol=ltol,
        stol=stol,
        angle_tol=angle_tol,
        primitive_cell=False,
        scale=False,
        attempt_supercell=False,
    )
    stacks = [find_layer_stack(s) for s in structures]
    table = np.full((len(structures), 5), np.nan)
    table[:, 0] = -1
    buckets: dict[tuple[str, int, int], list[int]] = {}
    for i, (structure, stack) in enumerate(zip(structures, stacks, strict=True)):
        if stack is not None:
            table[i, 1] = stack.spacing
            table[i, 2:] = stack.normal
            key = (structure.composition.reduced_formula, len(structure), stack.layers_per_period)
            buckets.setdefault(key, []).append(i)
    groups = table[:, 0]
    next_group = 0
    for members in buckets.values():
        representatives: list[int] = []
        for i in members:
            stack = stacks[i]
            assert stack is not None
            for r in representatives:
                delta = (table[r, 1] - stack.spacing) / stack.layers_per_period
                if matcher.fit(exfoliate(structures[i], stack, delta), structures[r]):
                    groups[i] = groups[r]
                    break
            else:
                representatives.append(i)
                groups[i] = next_group
                next_group += 1
    counts = np.bincount(groups[groups >= 0].astype(np.int64), minlength=next_group)
    alone = (groups >= 0) & (counts[np.maximum(groups, 0).astype(np.int64)] < 2)
    groups[alone] = -1
    return table


def carry(tensor: np.ndarray, normal: np.ndarray, period: float, target: float) -> np.ndarray:
    """A stack's tensor carried from stacking period ``period`` to ``target`` (Å).

    ``tensor`` (3x3) belongs to a cell whose layers have unit normal ``normal``; the result
    is in that cell's frame (its eigenvalues are the sibling's, whatever its orientation).
    """
    fraction = period / target
    chi = fraction * (np.asarray(tensor, dtype=float) - np.eye(3))
    depolarisation = (1.0 - fraction) / fraction * np.outer(normal, normal)
    return laminate_mix(chi, depolarisation)


def carried_values(
    table: np.ndarray,
    labelled: Sequence[int],
    tensors: Sequence[np.ndarray],
    value: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """The objective of every unlabelled sibling of a labelled structure, from its label.

    Parameters
    ----------
    table
        :func:`sibling_table` of the pool.
    labelled
        Indices of the labelled structures.
    tensors
        Their DFT tensors (3x3), in the order of ``labelled``.
    value
        Objective values of a ``(n, 3, 3)`` stack of tensors (rotation-invariant, e.g. a_r).

    Returns
    -------
    (np.ndarray, np.ndarray)
        The indices of the carried structures and their values. Each takes the label of the
        sibling whose period is closest to its own (the least vacuum added or removed).
    """
    labelled = [int(i) for i in labelled]
    groups, periods = table[:, 0], table[:, 1]
    by_group: dict[int, list[int]] = {}
    for position, i in enumerate(labelled):
        if groups[i] >= 0:
            by_group.setdefault(int(groups[i]), []).append(position)
    taken = set(labelled)
    indices, carried = [], []
    for j in np.flatnonzero(groups >= 0):
        if int(j) in taken or int(groups[j]) not in by_group:
            continue
        position = min(
            by_group[int(groups[j])],
            key=lambda p: abs(np.log(periods[labelled[p]] / periods[j])),
        )
        source = labelled[position]
        indices.append(int(j))
        carried.append(carry(tensors[position], table[source, 2:], periods[source], periods[j]))
    if not indices:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.asarray(indices, dtype=np.int64), np.asarray(value(np.stack(carried)), float)

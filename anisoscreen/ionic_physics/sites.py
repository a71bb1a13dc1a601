"""The sites of one cell in two descriptions: which site of one is which site of the other.

Per-site data (Born charges, force constants) computed for one description of a cell are
used for another only through :func:`site_order`, which pairs the sites by species and
position, so the same crystal with its sites listed in another order, or moved by lattice
vectors, gets the data in its own order, and a different structure gets none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError

__all__ = ["match_sites", "site_order"]


def match_sites(
    positions: np.ndarray,
    species: Sequence[Any],
    reference_positions: np.ndarray,
    reference_species: Sequence[Any],
    tolerance: float = 0.01,
) -> np.ndarray | None:
    """For each of ``positions``, the index of the reference site at the same place, or ``None``.

    Positions are fractional, compared modulo lattice vectors (largest component of the
    difference below ``tolerance``); the pairing must be one to one and keep the species.
    """
    delta = positions[:, None, :] - reference_positions[None, :, :]
    delta -= np.round(delta)
    distance = np.abs(delta).max(axis=2)
    order = distance.argmin(axis=1)
    if not (distance[np.arange(len(positions)), order] < tolerance).all():
        return None
    if len(set(order.tolist())) != len(order):
        return None
    if any(species[i] != reference_species[j] for i, j in enumerate(order)):
        return None
    return order


def site_order(reference: Structure, structure: Structure, tolerance: float = 0.01) -> np.ndarray:
    """For each site of ``structure``, the index of the same site in ``reference``.

    The two must share the lattice (within 1e-3 A); each site matches the one reference site
    of its species at the same position modulo lattice vectors (within ``tolerance`` in each
    fractional coordinate, :func:`match_sites`).

    Raises
    ------
    AnisoscreenError
        The two are not one structure ("another cell" or "other sites").
    """
    if len(reference) != len(structure) or not np.allclose(
        reference.lattice.matrix, structure.lattice.matrix, atol=1e-3
    ):
        raise AnisoscreenError("another cell")
    order = match_sites(
        structure.frac_coords,
        [site.species for site in structure],
        reference.frac_coords,
        [site.species for site in reference],
        tolerance,
    )
    if order is None:
        raise AnisoscreenError("other sites")
    return order

"""The sites of one cell in two descriptions: which site of one is which site of the other.

Per-site data (Born charges, force constants) computed for one description of a cell are
used for another only through :func:`site_order`, which pairs the sites by species and
position, so the same crystal with its sites listed in another order, or moved by lattice
vectors, gets the data in its own order, and a different structure gets none.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from anisoscreen.errors import AnisoscreenError

__all__ = ["site_order"]


def site_order(reference: Structure, structure: Structure, tolerance: float = 0.01) -> np.ndarray:
    """For each site of ``structure``, the index of the same site in ``reference``.

    The two must share the lattice (within 1e-3 A); each site matches the one reference site
    of its species at the same position modulo lattice vectors (within ``tolerance`` A).

    Raises
    ------
    AnisoscreenError
        The two are not one structure ("another cell" or "other sites").
    """
    if len(reference) != len(structure) or not np.allclose(
        reference.lattice.matrix, structure.lattice.matrix, atol=1e-3
    ):
        raise AnisoscreenError("another cell")
    delta = structure.frac_coords[:, None, :] - reference.frac_coords[None, :, :]
    delta -= np.round(delta)
    distance = np.linalg.norm(delta @ structure.lattice.matrix, axis=-1)
    same_species = np.array(
        [[a.species == b.species for b in reference] for a in structure], dtype=bool
    )
    matches = (distance < tolerance) & same_species
    order = matches.argmax(axis=1)
    if not matches.any(axis=1).all() or len(set(order.tolist())) != len(order):
        raise AnisoscreenError("other sites")
    return order

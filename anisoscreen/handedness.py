"""Left-handed cells made right-handed, without moving an atom.

Three lattice vectors with a negative triple product describe a valid crystal as well as a
right-handed set does, but some tools take a negative determinant for a broken cell.
:func:`right_handed` negates all three vectors and the fractional coordinates with them, so
every Cartesian position, distance and tensor stays exactly what it was.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

__all__ = ["is_left_handed", "right_handed"]


def is_left_handed(structure: Structure) -> bool:
    """Whether the lattice vectors of ``structure`` form a left-handed set."""
    return bool(np.linalg.det(structure.lattice.matrix) < 0)


def right_handed(structure: Structure) -> Structure:
    """``structure`` itself when right-handed, else the same crystal on (-a, -b, -c)."""
    if not is_left_handed(structure):
        return structure
    return Structure(
        Lattice(-structure.lattice.matrix, pbc=structure.lattice.pbc),
        [site.species for site in structure],
        -np.asarray(structure.frac_coords),
        site_properties=structure.site_properties,
        labels=structure.labels,
        charge=structure.charge,
        properties=structure.properties,
    )

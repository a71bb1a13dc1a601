"""Geometry of crystal structures that the model and the reports share: empty slabs (vacuum).

A layered crystal whose layers sit far apart has a wide slab of empty space between them; the
electronic response across such a gap is close to that of vacuum. The width of the largest
such slab is measured along the normals of the low-index lattice planes.
"""

from __future__ import annotations

import itertools

import numpy as np
from pymatgen.core import Structure

__all__ = ["LOW_INDEX_PLANES", "largest_empty_slab"]

LOW_INDEX_PLANES: tuple[tuple[int, int, int], ...] = tuple(
    (h, k, l)
    for h, k, l in itertools.product((-1, 0, 1), repeat=3)
    if any((h, k, l)) and next(x for x in (h, k, l) if x) > 0  # one of each +/- pair
)
"""The 13 lattice planes with Miller indices in {-1, 0, 1}."""


def largest_empty_slab(structure: Structure) -> tuple[float, tuple[int, int, int]]:
    """Width (angstrom) of the widest atom-free slab parallel to a low-index plane.

    For each plane ``hkl`` of :data:`LOW_INDEX_PLANES`, the atoms' heights along the plane
    normal, ``d_hkl * (f . hkl mod 1)``, are sorted; the largest gap between consecutive
    heights (periodically) is the thickest empty slab between atom centres. The widest over
    all planes is returned with its plane. A dense 3D crystal gives ~1-3 A; a van der Waals
    layered crystal ~3 A; a layer with vacuum padding the vacuum width plus ~3 A.

    Parameters
    ----------
    structure
        An ordered or disordered pymatgen structure (only site positions are used).

    Returns
    -------
    tuple[float, tuple[int, int, int]]
        The slab width in angstrom and the Miller indices of its plane.
    """
    frac = np.asarray(structure.frac_coords, dtype=float)
    best, best_plane = 0.0, LOW_INDEX_PLANES[0]
    for hkl in LOW_INDEX_PLANES:
        heights = np.sort(np.mod(frac @ np.asarray(hkl, dtype=float), 1.0))
        gaps = np.diff(np.concatenate([heights, heights[:1] + 1.0]))
        width = float(gaps.max()) * float(structure.lattice.d_hkl(hkl))
        if width > best:
            best, best_plane = width, hkl
    return best, best_plane

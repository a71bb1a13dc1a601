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


GAP_OFFSET = 3.5
"""Spacing (angstrom) of atom planes across a van der Waals gap: the part of an empty slab
that still belongs to the layers on either side. Only the width beyond it counts as vacuum."""

GAP_SOFTNESS = 1.0
"""Width (angstrom) of the quadratic onset of :func:`vacuum_excess`, so the vacuum fraction
(and every quantity built on it) is continuously differentiable in the gap width."""


def vacuum_excess(width: np.ndarray | float) -> np.ndarray:
    """Vacuum thickness (angstrom) in empty slabs of the given widths between atom planes.

    Zero up to :data:`GAP_OFFSET`, then a quadratic onset over :data:`GAP_SOFTNESS` that joins
    ``width - GAP_OFFSET - GAP_SOFTNESS / 2`` with a continuous slope: no jump when a gap
    crosses a threshold.
    """
    x = np.asarray(width, dtype=float) - GAP_OFFSET
    onset = np.clip(x, 0.0, GAP_SOFTNESS)
    return np.where(x <= GAP_SOFTNESS, onset**2 / (2.0 * GAP_SOFTNESS), x - GAP_SOFTNESS / 2.0)


def plane_vacuum_fractions(structure: Structure) -> list[tuple[float, np.ndarray]]:
    """Vacuum fraction along the normal of each low-index plane, and that unit normal.

    Along the normal of plane ``hkl`` the atoms sit at heights ``d_hkl * (f . hkl mod 1)``;
    every empty slab between consecutive heights contributes its :func:`vacuum_excess`, and
    the sum over one period, divided by ``d_hkl``, is the fraction of the cell's thickness
    along that normal that is vacuum. Summing every gap (not only the widest) makes a cell
    with several layers per period give what one layer per period gives.

    Returns
    -------
    list[tuple[float, np.ndarray]]
        ``(fraction, normal)`` for each plane of :data:`LOW_INDEX_PLANES`, the normal a
        Cartesian unit vector.
    """
    frac = np.asarray(structure.frac_coords, dtype=float)
    reciprocal = structure.lattice.reciprocal_lattice_crystallographic.matrix
    out = []
    for hkl in LOW_INDEX_PLANES:
        heights = np.sort(np.mod(frac @ np.asarray(hkl, dtype=float), 1.0))
        gaps = np.diff(np.concatenate([heights, heights[:1] + 1.0]))
        normal = np.asarray(hkl, dtype=float) @ reciprocal
        spacing = 1.0 / float(np.linalg.norm(normal))
        fraction = float(vacuum_excess(gaps * spacing).sum()) / spacing
        out.append((min(fraction, 1.0), normal * spacing))
    return out


WIRE_MIN_ANGLE_COS = 0.5
"""Planes whose normals make less than 60 degrees with the widest vacuum's normal are not
taken as a wire's second transverse direction (they share the first one's vacuum)."""


def depolarisation_tensor(structure: Structure) -> np.ndarray:
    """Geometric depolarisation ``D`` of the vacuum a structure holds (3x3, PSD, Cartesian).

    The read-out of :class:`~anisoscreen.model.nn.network.AnisoNet` turns the dense-limit
    susceptibility ``chi = (v0 / V) sum_i alpha_i`` into ``eps = I + chi (I + D chi)^-1``
    (Maxwell Garnett with depolarisation ``N`` and filling fraction ``f``, where ``D = (1 -
    f) / f * N``):

    * dense crystal (no slab wider than :data:`GAP_OFFSET`): ``D = 0``, the sum/V read-out;
    * layers with vacuum of fraction ``q`` along normal ``n``: ``f = 1 - q``, ``N = n n^T``,
      which is the exact laminate (parallel mixing in the plane, series mixing along ``n``);
    * a wire (vacuum along a second normal ``n2`` too, with fraction ``q2 <= q``): the
      Maxwell Garnett tensor of aligned cylinders, ``N = (I - t t^T) / 2`` with axis
      ``t = n x n2`` and ``f = (1 - q)(1 - q2)``, blended with the layer form by ``q2 / q``
      so that ``D`` is continuous as the second vacuum opens. Series mixing in both
      transverse directions would treat the wire as two crossed laminates, which
      under-estimates its transverse response (field lines go around a wire, not only
      through it); the cylinder form is the dilute limit of isolated wires.

    ``D`` rotates with the structure, and does not change with translations, permutations
    of the sites, or a supercell (every gap of a period is summed).
    """
    planes = plane_vacuum_fractions(structure)
    first = max(range(len(planes)), key=lambda k: planes[k][0])
    q1, n1 = planes[first]
    if q1 <= 0.0:
        return np.zeros((3, 3))
    f1 = 1.0 - q1
    layer = (q1 / f1) * np.outer(n1, n1)
    transverse = [(q, n) for q, n in planes if abs(float(n @ n1)) < WIRE_MIN_ANGLE_COS and q > 0.0]
    if not transverse:
        return layer
    q2, n2 = max(transverse, key=lambda item: item[0])
    axis = np.cross(n1, n2)
    axis /= np.linalg.norm(axis)
    filling = f1 * (1.0 - q2)
    wire = (1.0 - filling) / filling * (np.eye(3) - np.outer(axis, axis)) / 2.0
    weight = q2 / q1
    return (1.0 - weight) * layer + weight * wire


def laminate_mix(chi: np.ndarray, depolarisation: np.ndarray) -> np.ndarray:
    """``eps = I + chi (I + D chi)^-1`` for (..., 3, 3) susceptibilities and depolarisations.

    With ``chi = f chi_L`` and ``D = (1 - f) / f * n n^T`` this is the laminate of a layer
    of susceptibility ``chi_L`` (fraction ``f``) and vacuum; ``D = 0`` gives ``I + chi``.
    """
    chi = np.asarray(chi, dtype=float)
    eye = np.broadcast_to(np.eye(3), chi.shape)
    # X (I + D chi) = chi  <=>  (I + chi D) X^T = chi; X is symmetric for symmetric chi, D
    mixed = np.linalg.solve(eye + chi @ np.asarray(depolarisation, dtype=float), chi)
    mixed = 0.5 * (mixed + np.swapaxes(mixed, -1, -2))
    return eye + mixed

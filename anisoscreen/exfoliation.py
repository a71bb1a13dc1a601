"""Layered crystals pulled apart along their stacking normal, and the laminate tensor they get.

A crystal whose bonded components are all 2D layers (Larsen, from the CrystalNN bonds of
:mod:`anisoscreen.bonding`) is a stack: the layers share one lattice plane ``hkl``, and one
period ``d = d_hkl`` along its normal ``n`` holds ``m`` of them. :func:`exfoliate` opens every
gap between layers by ``delta`` angstrom: each layer moves rigidly along ``n`` and each
lattice vector ``v_i`` grows by ``hkl_i * m * delta * n``, so in-plane geometry and every
intra-layer bond are unchanged.

The padded stack is a laminate of the bulk (thickness fraction ``f = d / (d + m delta)``)
and vacuum. Taking the layer's own response as unchanged when it is isolated, its dielectric
tensor follows from the bulk one exactly (:func:`laminate_tensor`: parallel mixing in the
plane, series mixing along ``n``). That holds well for van der Waals layers, whose
interlayer coupling is weak, and not for ionic layers, whose charge and response change
when they are separated.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import reduce

import numpy as np
from pymatgen.core import Lattice, Structure

from anisoscreen.bonding import Bond, bonded_components
from anisoscreen.geometry import laminate_mix

__all__ = ["LayerStack", "exfoliate", "find_layer_stack", "laminate_tensor", "layer_stack"]


@dataclass
class LayerStack:
    """How a layered crystal is stacked.

    Attributes
    ----------
    miller
        Miller indices ``hkl`` of the layers' lattice plane (coprime integers).
    normal
        Cartesian unit normal of the layers.
    spacing
        Period ``d_hkl`` along the normal (angstrom).
    layers_per_period
        Layers ``m`` in one period.
    site_layer
        Per site of the cell, the index of its layer in the infinite stack (consecutive
        layers differ by one; a lattice translation by ``v_i`` adds ``hkl_i * m``).
    """

    miller: tuple[int, int, int]
    normal: np.ndarray
    spacing: float
    layers_per_period: int
    site_layer: np.ndarray


def _plane_of(translations: list[tuple[int, int, int]]) -> tuple[int, int, int] | None:
    """Coprime ``hkl`` of the plane spanned by a 2D component's self-translations."""
    vectors = [np.asarray(t, dtype=np.int64) for t in translations]
    for i, first in enumerate(vectors):
        for second in vectors[i + 1 :]:
            cross = np.cross(first, second)
            if cross.any():
                divisor = reduce(math.gcd, (abs(int(x)) for x in cross))
                hkl = cross // divisor
                if hkl[np.flatnonzero(hkl)[0]] < 0:
                    hkl = -hkl
                return (int(hkl[0]), int(hkl[1]), int(hkl[2]))
    return None


def layer_stack(structure: Structure, bonds: list[Bond]) -> LayerStack | None:
    """The stacking of ``structure`` if every bonded component is a parallel 2D layer.

    Returns ``None`` for anything else: a framework, chains, molecules or ions between the
    layers, layers that are not parallel, or two layers at the same height.
    """
    components = bonded_components(len(structure), bonds)
    if not components or any(c.dimensionality != 2 for c in components):
        return None
    planes = {_plane_of(c.translations) for c in components}
    if len(planes) != 1 or None in planes:
        return None
    miller = planes.pop()
    assert miller is not None
    hkl = np.asarray(miller, dtype=float)
    frac = np.asarray(structure.frac_coords, dtype=float)
    # heights along the normal in periods, each component unwrapped into one piece
    centres = np.array(
        [float(((frac[c.sites] + np.asarray(c.images)) @ hkl).mean()) for c in components]
    )
    within = np.mod(centres, 1.0)
    order = np.argsort(within)
    sorted_within = within[order]
    separations = np.diff(np.concatenate([sorted_within, sorted_within[:1] + 1.0]))
    if len(components) > 1 and separations.min() < 1e-3:
        return None
    m = len(components)
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m)
    site_layer = np.zeros(len(structure), dtype=np.int64)
    for c, centre, k in zip(components, centres, rank, strict=True):
        index = int(math.floor(centre)) * m + int(k)
        periods = np.asarray(c.images, dtype=np.int64) @ np.asarray(miller, dtype=np.int64)
        site_layer[c.sites] = index - periods * m
    reciprocal = hkl @ structure.lattice.reciprocal_lattice_crystallographic.matrix
    spacing = 1.0 / float(np.linalg.norm(reciprocal))
    return LayerStack(miller, reciprocal * spacing, spacing, m, site_layer)


def find_layer_stack(structure: Structure) -> LayerStack | None:
    """:func:`layer_stack` of ``structure`` from its own CrystalNN bonds.

    ``None`` also when CrystalNN fails (it can on exotic coordination): no stack is found.
    """
    from anisoscreen.bonding import crystalnn_bonds

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return layer_stack(structure, crystalnn_bonds(structure))
    except Exception:
        return None


def exfoliate(structure: Structure, stack: LayerStack, delta: float) -> Structure:
    """``structure`` with every gap between layers opened by ``delta`` angstrom.

    Site properties and the in-plane lattice are kept; the cell grows by ``m * delta``
    along the normal, and each layer moves rigidly with its gap.
    """
    shift = delta * stack.normal
    miller = np.asarray(stack.miller, dtype=float)
    matrix = structure.lattice.matrix + np.outer(miller * stack.layers_per_period, shift)
    cart = structure.cart_coords + np.outer(stack.site_layer, shift)
    return Structure(
        Lattice(matrix),
        structure.species,
        cart,
        coords_are_cartesian=True,
        site_properties=structure.site_properties or None,
    )


def laminate_tensor(
    eps_bulk: np.ndarray, stack: LayerStack, delta: float
) -> tuple[np.ndarray, float]:
    """The dielectric tensor of the stack exfoliated by ``delta``, and its fraction ``f``.

    ``eps_bulk`` is the bulk's (3x3) tensor, read as the layer's own response (the
    approximation of this module); ``f = d / (d + m delta)``.
    """
    fraction = stack.spacing / (stack.spacing + stack.layers_per_period * delta)
    chi = fraction * (np.asarray(eps_bulk, dtype=float) - np.eye(3))
    depolarisation = (1.0 - fraction) / fraction * np.outer(stack.normal, stack.normal)
    return laminate_mix(chi, depolarisation), fraction

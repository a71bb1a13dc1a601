"""Exfoliation: finding a crystal's layers, pulling them apart, and the laminate labels."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.bonding import crystalnn_bonds
from anisoscreen.exfoliation import exfoliate, laminate_tensor, layer_stack
from anisoscreen.geometry import GAP_OFFSET, GAP_SOFTNESS, depolarisation_tensor

BULK_EPS = np.diag([15.4, 15.4, 6.2])  # a layered tensor, in-plane >> out-of-plane


def mos2_2h() -> Structure:
    """Bulk 2H-MoS2: two layers per cell along c."""
    return Structure.from_spacegroup(
        "P6_3/mmc",
        Lattice.hexagonal(3.16, 12.29),
        ["Mo", "S"],
        [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]],
    )


def intralayer_distances(structure: Structure, cutoff: float = 3.0) -> np.ndarray:
    """Sorted neighbour distances below ``cutoff`` (bonds inside a layer)."""
    _, _, _, distances = structure.get_neighbor_list(cutoff)
    return np.sort(distances)


def test_layer_stack_of_2h_mos2():
    stack = layer_stack(mos2_2h(), crystalnn_bonds(mos2_2h()))
    assert stack is not None
    assert stack.miller == (0, 0, 1)
    assert stack.layers_per_period == 2
    assert stack.spacing == pytest.approx(12.29)
    np.testing.assert_allclose(np.abs(stack.normal), [0, 0, 1], atol=1e-12)


def test_a_framework_is_not_a_stack():
    rocksalt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    assert layer_stack(rocksalt, crystalnn_bonds(rocksalt)) is None


@pytest.mark.parametrize("delta", [2.0, 8.0, 16.0])
def test_exfoliation_opens_every_gap_and_keeps_every_layer(delta):
    bulk = mos2_2h()
    stack = layer_stack(bulk, crystalnn_bonds(bulk))
    assert stack is not None
    opened = exfoliate(bulk, stack, delta)
    assert opened.lattice.c == pytest.approx(12.29 + 2 * delta)
    assert opened.lattice.a == pytest.approx(3.16)
    np.testing.assert_allclose(intralayer_distances(opened), intralayer_distances(bulk))
    # the S-S distance across each van der Waals gap grows by delta
    heights = np.sort(opened.cart_coords[:, 2] % opened.lattice.c)
    gaps = np.diff(np.concatenate([heights, heights[:1] + opened.lattice.c]))
    bulk_heights = np.sort(bulk.cart_coords[:, 2] % bulk.lattice.c)
    bulk_gaps = np.diff(np.concatenate([bulk_heights, bulk_heights[:1] + bulk.lattice.c]))
    np.testing.assert_allclose(np.sort(gaps)[-2:], np.sort(bulk_gaps)[-2:] + delta, atol=1e-9)


def test_exfoliation_in_a_cell_whose_layers_are_not_a_face():
    bulk = mos2_2h()
    tilted = bulk.copy()
    tilted.make_supercell([[1, 0, 1], [0, 1, 0], [0, 0, 1]])  # layers become the (1 0 1) plane
    stack = layer_stack(tilted, crystalnn_bonds(tilted))
    assert stack is not None and stack.miller == (1, 0, 1)
    assert stack.spacing == pytest.approx(12.29)
    opened = exfoliate(tilted, stack, 6.0)
    reference = exfoliate(bulk, layer_stack(bulk, crystalnn_bonds(bulk)), 6.0)  # type: ignore[arg-type]
    assert opened.volume == pytest.approx(reference.volume)
    np.testing.assert_allclose(
        depolarisation_tensor(opened), depolarisation_tensor(reference), atol=1e-9
    )


def test_laminate_labels_follow_the_mixing_laws():
    bulk = mos2_2h()
    stack = layer_stack(bulk, crystalnn_bonds(bulk))
    assert stack is not None
    for delta in (2.0, 12.0):
        eps, fraction = laminate_tensor(BULK_EPS, stack, delta)
        assert fraction == pytest.approx(12.29 / (12.29 + 2 * delta))
        # parallel in the plane, series along the normal
        assert eps[0, 0] == pytest.approx(fraction * 15.4 + 1 - fraction)
        assert 1 / eps[2, 2] == pytest.approx(fraction / 6.2 + 1 - fraction)
    # the 2D polarisabilities (eps_par - 1) c and (1 - 1/eps_perp) c do not depend on delta
    wide = [laminate_tensor(BULK_EPS, stack, d)[0] for d in (20.0, 40.0)]
    heights = [12.29 + 2 * d for d in (20.0, 40.0)]
    assert (wide[0][0, 0] - 1) * heights[0] == pytest.approx((wide[1][0, 0] - 1) * heights[1])
    assert (1 - 1 / wide[0][2, 2]) * heights[0] == pytest.approx(
        (1 - 1 / wide[1][2, 2]) * heights[1]
    )


def test_the_readout_geometry_differs_from_the_label_only_by_the_gap_offset():
    """The read-out counts vacuum beyond GAP_OFFSET + GAP_SOFTNESS / 2 from the atom planes;
    the label counts what was added to the bulk. They differ by the bulk gap's offset."""
    bulk = mos2_2h()
    stack = layer_stack(bulk, crystalnn_bonds(bulk))
    assert stack is not None
    heights = np.sort(bulk.cart_coords[:, 2] % bulk.lattice.c)
    bulk_gap = np.diff(np.concatenate([heights, heights[:1] + bulk.lattice.c])).max()
    for delta in (4.0, 16.0):
        opened = exfoliate(bulk, stack, delta)
        _, fraction = laminate_tensor(BULK_EPS, stack, delta)
        geometric = 1 / (1 + float(stack.normal @ depolarisation_tensor(opened) @ stack.normal))
        offset = 2 * (GAP_OFFSET + GAP_SOFTNESS / 2 - bulk_gap) / opened.lattice.c
        assert geometric - fraction == pytest.approx(offset, abs=1e-9)

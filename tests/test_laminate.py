"""The laminate read-out (model v3): the geometry of the vacuum, the mixing law, and the network.

A layer padded with vacuum mixes in parallel in its plane and in series along its normal;
:func:`anisoscreen.geometry.depolarisation_tensor` measures the vacuum and
:func:`anisoscreen.geometry.laminate_mix` mixes. The network's ``psd_laminate_volume``
read-out must be exact for such laminates, equal to ``psd_sum_volume`` for dense crystals,
and keep every symmetry of the structure.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen.geometry import (
    GAP_OFFSET,
    GAP_SOFTNESS,
    depolarisation_tensor,
    laminate_mix,
    vacuum_excess,
)
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig, laminate_susceptibility
from anisoscreen.model.training.comparison import hbn_layer, mos2_layer

MOS2_HALF_THICKNESS = 1.565


def backus_laminate(eps_layer: np.ndarray, fraction: float) -> np.ndarray:
    """Textbook laminate (normal z) of a layer tensor and vacuum: continuity of E_t and D_n."""
    a = eps_layer[2, 2]
    out = np.zeros((3, 3))
    out[2, 2] = 1.0 / (fraction / a + 1.0 - fraction)
    for t in range(2):
        out[2, t] = out[t, 2] = fraction * eps_layer[2, t] / a * out[2, 2]
        for u in range(2):
            out[t, u] = (
                fraction * eps_layer[t, u]
                + (1.0 - fraction) * (t == u)
                - fraction * eps_layer[t, 2] * eps_layer[2, u] / a
                + (fraction * eps_layer[t, 2] / a) * (fraction * eps_layer[2, u] / a) * out[2, 2]
            )
    return out


def rocksalt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def network(readout: str = "psd_laminate_volume", seed: int = 0) -> AnisoNet:
    torch.manual_seed(seed)
    config = ModelConfig(
        mul=4, lmax=2, readout=readout, volume_per_atom=15.0, target_shift=0.5, target_scale=0.4
    )
    return AnisoNet(config).double().eval()


def predict(net: AnisoNet, structures: list[Structure]) -> np.ndarray:
    graphs = [structure_to_graph(s, allow_isolated=True) for s in structures]
    with torch.no_grad():
        return net.predict_tensor(collate(graphs, torch.float64)).numpy()


def rotated(structure: Structure, rotation: np.ndarray) -> Structure:
    return Structure(
        Lattice(structure.lattice.matrix @ rotation.T), structure.species, structure.frac_coords
    )


# -- the mixing law -------------------------------------------------------------------------
def test_laminate_mix_is_the_textbook_laminate_for_any_layer_tensor():
    rng = np.random.default_rng(0)
    for fraction in (0.1, 0.45, 0.9):
        root = rng.normal(size=(3, 3))
        eps_layer = np.eye(3) + root @ root.T
        depolarisation = (1 - fraction) / fraction * np.diag([0.0, 0.0, 1.0])
        mixed = laminate_mix(fraction * (eps_layer - np.eye(3)), depolarisation)
        np.testing.assert_allclose(mixed, backus_laminate(eps_layer, fraction), atol=1e-12)


def test_laminate_mix_without_vacuum_is_the_dense_sum():
    chi = np.diag([2.0, 3.0, 4.0])
    np.testing.assert_allclose(laminate_mix(chi, np.zeros((3, 3))), np.eye(3) + chi)


# -- the geometry of the vacuum ---------------------------------------------------------------
def test_dense_crystal_holds_no_vacuum():
    np.testing.assert_array_equal(depolarisation_tensor(rocksalt()), np.zeros((3, 3)))


def test_layer_in_a_box_gets_the_laminate_depolarisation():
    c = 20.0
    width = c - 2 * MOS2_HALF_THICKNESS
    fraction = 1.0 - (width - GAP_OFFSET - GAP_SOFTNESS / 2) / c
    expected = np.diag([0.0, 0.0, (1 - fraction) / fraction])
    np.testing.assert_allclose(depolarisation_tensor(mos2_layer(c)), expected, atol=1e-12)


def test_vacuum_excess_is_smooth_at_the_threshold():
    widths = np.linspace(GAP_OFFSET - 0.5, GAP_OFFSET + 2 * GAP_SOFTNESS, 2001)
    excess = vacuum_excess(widths)
    slope = np.diff(excess) / np.diff(widths)
    assert excess[0] == 0.0 and np.all(slope >= -1e-12) and np.all(slope <= 1 + 1e-9)
    assert np.max(np.abs(np.diff(slope))) < 1e-2  # continuous slope: no kink, no jump


def test_depolarisation_changes_continuously_as_a_gap_opens():
    heights = np.linspace(2 * MOS2_HALF_THICKNESS + GAP_OFFSET - 0.3, 12.0, 400)
    dzz = np.array([depolarisation_tensor(mos2_layer(c))[2, 2] for c in heights])
    assert dzz[0] == 0.0 and dzz[-1] > 0.3
    assert np.max(np.abs(np.diff(dzz))) < 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_depolarisation_rotates_with_the_structure(seed):
    layer = mos2_layer(18.0)
    rotation = Rotation.random(random_state=seed).as_matrix()
    d = depolarisation_tensor(layer)
    np.testing.assert_allclose(
        depolarisation_tensor(rotated(layer, rotation)), rotation @ d @ rotation.T, atol=1e-12
    )


def test_depolarisation_ignores_translation_permutation_and_supercells():
    layer = mos2_layer(18.0)
    reference = depolarisation_tensor(layer)
    shifted = layer.copy()
    shifted.translate_sites(range(len(shifted)), [0.13, 0.71, 0.29])
    permuted = Structure(layer.lattice, layer.species[::-1], layer.frac_coords[::-1])
    for variant in (shifted, permuted, layer * (2, 2, 1), layer * (1, 1, 3), layer * (2, 1, 2)):
        np.testing.assert_allclose(depolarisation_tensor(variant), reference, atol=1e-12)


def test_two_layers_per_cell_equal_one_layer_per_half_cell():
    single = mos2_layer(18.0)
    double = single * (1, 1, 2)
    # move the second layer off-centre: the cell still holds the same vacuum in two gaps
    upper = [i for i, site in enumerate(double) if site.frac_coords[2] > 0.5]
    double.translate_sites(upper, [0.0, 0.0, 0.1])
    np.testing.assert_allclose(
        depolarisation_tensor(double), depolarisation_tensor(single), atol=1e-12
    )


def test_layer_not_parallel_to_a_cell_face():
    layer = mos2_layer(18.0)
    # a' = a + c: the layer plane is spanned by a' - c and b, the (1 0 1) plane of the new cell
    tilted = layer.copy()
    tilted.make_supercell([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(
        depolarisation_tensor(tilted), depolarisation_tensor(layer), atol=1e-12
    )


def chain_in_box(box: float) -> Structure:
    """A linear chain of carbon atoms along z (1.4 A apart) in a square box of side ``box``."""
    return Structure(Lattice.tetragonal(box, 2.8), ["C", "C"], [[0.5, 0.5, 0.0], [0.5, 0.5, 0.5]])


def test_a_wire_gets_the_cylinder_depolarisation_not_two_crossed_laminates():
    box = 16.0
    d = depolarisation_tensor(chain_in_box(box))
    # nothing along the wire axis, equal in both transverse directions
    assert d[2, 2] == pytest.approx(0.0, abs=1e-12)
    assert d[0, 0] == pytest.approx(d[1, 1])
    q = float(vacuum_excess(box)) / box
    filling = (1 - q) ** 2
    assert d[0, 0] == pytest.approx((1 - filling) / filling / 2)
    # two crossed laminates would give (1 - f1) / f1 per direction, too weak a screening
    assert d[0, 0] > q / (1 - q)


# -- the network ---------------------------------------------------------------------------
def test_dense_crystal_reads_out_exactly_as_the_sum_over_volume():
    laminate, dense = network("psd_laminate_volume"), network("psd_sum_volume")
    dense.load_state_dict(laminate.state_dict())
    structures = [rocksalt(), rocksalt() * (1, 1, 2), mos2_layer(2 * MOS2_HALF_THICKNESS + 2.5)]
    np.testing.assert_array_equal(predict(laminate, structures), predict(dense, structures))


def test_laminate_readout_is_positive_definite_and_above_vacuum():
    net = network()
    structures = [mos2_layer(c) for c in (8.0, 12.0, 30.0, 60.0)] + [chain_in_box(14.0)]
    eigenvalues = np.linalg.eigvalsh(predict(net, structures))
    assert eigenvalues.min() > 1.0


@pytest.mark.parametrize("seed", [0, 3])
def test_laminate_readout_is_rotation_equivariant(seed):
    net = network()
    layer = mos2_layer(16.0)
    rotation = Rotation.random(random_state=seed).as_matrix()
    eps, eps_rotated = predict(net, [layer, rotated(layer, rotation)])
    np.testing.assert_allclose(eps_rotated, rotation @ eps @ rotation.T, atol=1e-10)


def test_laminate_readout_ignores_translation_permutation_and_supercells():
    net = network()
    layer = hbn_layer(16.0)
    shifted = layer.copy()
    shifted.translate_sites(range(len(shifted)), [0.3, 0.1, 0.2])
    permuted = Structure(layer.lattice, layer.species[::-1], layer.frac_coords[::-1])
    eps = predict(net, [layer, shifted, permuted, layer * (2, 2, 1), layer * (1, 1, 2)])
    np.testing.assert_allclose(eps, np.broadcast_to(eps[0], eps.shape), atol=1e-10)


def test_the_network_is_the_exact_laminate_of_what_it_predicts_for_a_denser_stack():
    """Atoms that see no other layer give the same chi_L, so eps follows the laminate law."""
    net = network()
    heights = (12.0, 20.0, 40.0)
    eps = predict(net, [mos2_layer(c) for c in heights])
    in_plane = (eps[:, 0, 0] - 1.0) * np.array(heights)
    normal = (1.0 - 1.0 / eps[:, 2, 2]) * np.array(heights)
    np.testing.assert_allclose(in_plane, in_plane[0], rtol=1e-9)
    np.testing.assert_allclose(normal, normal[0], rtol=1e-9)


def test_numpy_and_torch_laminate_mixes_agree():
    """The labels (numpy, ``laminate_mix``) and the read-out (torch) use one formula."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(20, 3, 3))
    chi = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(3)
    n = rng.normal(size=(20, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    depolarisation = rng.uniform(0, 5, size=(20, 1, 1)) * n[:, :, None] * n[:, None, :]
    depolarisation[:5] = 0.0  # dense crystals among them
    mixed = laminate_susceptibility(torch.from_numpy(chi), torch.from_numpy(depolarisation))
    np.testing.assert_allclose(
        np.eye(3) + mixed.numpy(), laminate_mix(chi, depolarisation), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    ("readout", "expected"), [("psd_laminate_volume", True), ("psd_sum_volume", False)]
)
def test_the_predictor_builds_the_depolarisation_only_for_a_laminate_readout(
    tmp_path, readout, expected
):
    from anisoscreen.model.checkpoint import load_model, save_model
    from anisoscreen.model.inference import Predictor

    net = network(readout)
    save_model(tmp_path / "m.pt", net.config, [net.float().state_dict()], "m", "0")
    predictor = Predictor(load_model(tmp_path / "m.pt"), device="cpu")
    graph = predictor.graph_or_error(mos2_layer(30.0))
    assert not isinstance(graph, str)
    assert bool(np.any(graph.depolarisation != 0)) is expected

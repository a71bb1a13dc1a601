"""The equivariant network: exact symmetry properties and graph construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm
from anisoscreen.model.nn.graph import GraphError, collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig

READOUT_SETTINGS = {
    "mean": {"target_shift": 8.0, "target_scale": 2.0},
    "sum_volume": {"target_shift": 8.0, "target_scale": 2.0, "volume_per_atom": 15.0},
    "psd_sum_volume": {"target_shift": 1.0, "target_scale": 0.5, "volume_per_atom": 15.0},
}


@pytest.fixture(scope="module", params=sorted(READOUT_SETTINGS))
def net(request) -> AnisoNet:
    """A random network with each read-out: every symmetry test runs on all of them."""
    torch.manual_seed(3)
    config = ModelConfig(mul=6, lmax=3, readout=request.param, **READOUT_SETTINGS[request.param])
    return AnisoNet(config).double().eval()


def predict(net, structure: Structure) -> np.ndarray:
    with torch.no_grad():
        return net.predict_tensor(collate([structure_to_graph(structure)], torch.float64))[
            0
        ].numpy()


def rel_err(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_output_is_symmetric_and_anisotropic_for_low_symmetry(net, triclinic):
    eps = predict(net, triclinic)
    np.testing.assert_allclose(eps, eps.T, atol=1e-12)
    eig = tm.eigenvalues(eps)
    assert eig[-1] - eig[0] > 1e-4  # a triclinic crystal gets a genuinely anisotropic tensor


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotating_the_crystal_rotates_the_tensor(net, triclinic, seed):
    r = Rotation.random(random_state=seed).as_matrix()
    rotated = Structure(
        Lattice(triclinic.lattice.matrix @ r.T), triclinic.species, triclinic.frac_coords
    )
    assert rel_err(predict(net, rotated), tm.rotate(predict(net, triclinic), r)) < 1e-5


def test_cubic_crystal_gives_isotropic_tensor(net):
    perovskite = Structure(
        Lattice.cubic(3.9),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    eps = predict(net, perovskite)
    np.testing.assert_allclose(eps, eps[0, 0] * np.eye(3), atol=1e-6)


def test_translation_permutation_and_supercells_are_invariant(net, triclinic):
    reference = predict(net, triclinic)
    moved = triclinic.copy()
    moved.translate_sites(list(range(len(moved))), [0.13, -0.27, 0.41])
    permuted = Structure.from_sites([triclinic[i] for i in (2, 0, 3, 1)])
    for variant in (moved, permuted, triclinic * (2, 1, 1), triclinic * (2, 2, 2)):
        assert rel_err(predict(net, variant), reference) < 1e-6


def test_batched_equals_one_by_one(net, triclinic):
    other = triclinic * (1, 1, 2)
    other.replace_species({"Ga": "Al"})
    with torch.no_grad():
        batched = net.predict_tensor(
            collate([structure_to_graph(s) for s in (triclinic, other)], torch.float64)
        )
    np.testing.assert_allclose(batched[0].numpy(), predict(net, triclinic), atol=1e-12)
    np.testing.assert_allclose(batched[1].numpy(), predict(net, other), atol=1e-12)


def test_scalar_variant_is_not_constrained_by_symmetry():
    torch.manual_seed(0)
    scalar = AnisoNet(ModelConfig(mul=6, lmax=2, output="scalar", target_shift=8.0)).double().eval()
    nacl = Structure(
        Lattice.cubic(5.6),
        ["Na"] * 4 + ["Cl"] * 4,
        [
            [0, 0, 0],
            [0.5, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            [0.5, 0, 0],
            [0, 0.5, 0],
            [0, 0, 0.5],
            [0.5, 0.5, 0.5],
        ],
    )
    eps = predict(scalar, nacl)
    np.testing.assert_allclose(eps, eps.T)
    assert np.abs(eps - eps[0, 0] * np.eye(3)).max() > 1e-6  # no built-in isotropy for cubic


def test_graph_edges_match_brute_force(triclinic):
    g = structure_to_graph(triclinic, cutoff=5.0)
    lengths = np.linalg.norm(g.edge_vec, axis=1)
    assert lengths.max() <= 5.0 and lengths.min() > 0.5
    for i, site in enumerate(triclinic):
        expected = sorted(n.nn_distance for n in triclinic.get_neighbors(site, 5.0))
        np.testing.assert_allclose(sorted(lengths[g.edge_dst == i]), expected, atol=1e-8)
    # edge vectors point from the centre to the neighbour image
    i, j = g.edge_dst[0], g.edge_src[0]
    frac = triclinic.lattice.get_fractional_coords(triclinic[i].coords + g.edge_vec[0])
    np.testing.assert_allclose(np.mod(frac - triclinic[j].frac_coords + 1e-9, 1.0), 0, atol=1e-6)


def test_graph_refuses_disorder_and_isolated_atoms():
    disordered = Structure(
        Lattice.cubic(4), [{"Fe": 0.5, "Co": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    with pytest.raises(GraphError, match="disordered"):
        structure_to_graph(disordered)
    lonely = Structure(
        Lattice.cubic(12), ["Na", "Cl", "Ar"], [[0, 0, 0], [0.2, 0, 0], [0.5, 0.5, 0.5]]
    )
    with pytest.raises(GraphError, match=r"site 2 \(Ar\) has no neighbour"):
        structure_to_graph(lonely)
    assert structure_to_graph(lonely, allow_isolated=True).num_nodes == 3


def test_network_is_the_same_function_through_either_edge_product(triclinic, monkeypatch):
    from anisoscreen.model.nn.edge_tp import cpu_fused as fused

    torch.manual_seed(0)
    net = AnisoNet(ModelConfig(mul=6, lmax=3, target_scale=2.0)).double()
    graph = collate([structure_to_graph(triclinic)], torch.float64)
    results = {}
    for enabled in ("1", "0"):
        monkeypatch.setenv(fused.DISABLE_ENV, enabled)
        fused.load_kernel.cache_clear()
        net.zero_grad()
        out = net(graph)
        (out**2).sum().backward()
        results[enabled] = (out.detach(), [p.grad.clone() for p in net.parameters()])
    fused.load_kernel.cache_clear()
    (out_fused, grads_fused), (out_torch, grads_torch) = results["1"], results["0"]
    torch.testing.assert_close(out_fused, out_torch, rtol=1e-11, atol=1e-11)
    for grad_fused, grad_torch in zip(grads_fused, grads_torch, strict=True):
        torch.testing.assert_close(grad_fused, grad_torch, rtol=1e-10, atol=1e-10)


def test_radial_networks_see_each_distinct_edge_length_once(net, triclinic):
    graph = collate([structure_to_graph(triclinic), structure_to_graph(triclinic)], torch.float64)
    rows = []
    hooks = [
        conv.radial.register_forward_hook(lambda _, inputs, __: rows.append(len(inputs[0])))
        for conv in [*net.convolutions, net.output]
    ]
    try:
        with torch.no_grad():
            batched = net(graph)
    finally:
        for hook in hooks:
            hook.remove()
    distinct = len(torch.unique(graph.edge_vec.norm(dim=1)))
    # two copies of one crystal: every length occurs at least twice (bond directions, copies)
    assert rows == [distinct] * 3 and 2 * distinct <= graph.edge_vec.shape[0]
    single = net(collate([structure_to_graph(triclinic)], torch.float64)).detach()
    torch.testing.assert_close(batched, single.expand(2, -1), rtol=1e-12, atol=1e-12)

"""The equivariant network: exact symmetry properties and graph construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm
from anisoscreen.model.graph import GraphError, collate, structure_to_graph
from anisoscreen.model.network import AnisoNet, ModelConfig


@pytest.fixture(scope="module")
def net() -> AnisoNet:
    torch.manual_seed(3)
    return AnisoNet(ModelConfig(mul=6, lmax=3, target_shift=8.0, target_scale=2.0)).double().eval()


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

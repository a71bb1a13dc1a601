"""Ionic and static read-outs: PSD and extensive by construction, symmetric, invariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm
from anisoscreen.model.checkpoint import load_model, save_model
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig
from anisoscreen.model.training.train import TrainConfig, target_stats, training_loss

READOUTS = ["psd_square_volume", "psd_outer_volume"]


def outer_net(
    seed: int, target: str = "ionic", readout: str = "psd_square_volume", **fields
) -> AnisoNet:
    torch.manual_seed(seed)
    config = ModelConfig(
        mul=6,
        lmax=2,
        readout=readout,
        target=target,
        volume_per_atom=12.0,
        target_scale=3.0,
        **fields,
    )
    return AnisoNet(config).double().eval()


def predict(net: AnisoNet, structure: Structure) -> np.ndarray:
    with torch.no_grad():
        graph = collate([structure_to_graph(structure, allow_isolated=True)], torch.float64)
        return net.predict_tensor(graph)[0].numpy()


def random_structure(seed: int) -> Structure:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    lattice = Lattice.from_parameters(*rng.uniform(3.5, 6.5, 3), *rng.uniform(70, 110, 3))
    species = list(rng.choice(["O", "Ti", "Ba", "N", "Ga", "F", "Li"], size=n))
    return Structure(lattice, species, rng.uniform(0, 1, (n, 3)))


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("seed", range(5))
def test_ionic_tensor_is_psd_for_random_networks_and_structures(seed, readout):
    eps0 = predict(outer_net(seed, readout=readout), random_structure(seed))
    np.testing.assert_allclose(eps0, eps0.T, atol=1e-12)
    eigenvalues = np.linalg.eigvalsh(eps0)
    assert eigenvalues[0] >= -1e-10 * max(1.0, eigenvalues[-1])
    assert eigenvalues[-1] > 1e-6  # a real response, not the zero tensor


@pytest.mark.parametrize("readout", READOUTS)
def test_total_target_adds_the_vacuum_identity_and_ionic_does_not(triclinic, readout):
    ionic = predict(outer_net(4, "ionic", readout), triclinic)
    total = predict(outer_net(4, "total", readout), triclinic)  # same weights, same seed
    np.testing.assert_allclose(total, ionic + np.eye(3), atol=1e-12)
    assert np.linalg.eigvalsh(total)[0] >= 1.0 - 1e-10


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_rotating_the_crystal_rotates_the_ionic_tensor(triclinic, seed, readout):
    net = outer_net(1, readout=readout)
    rotation = Rotation.random(random_state=seed).as_matrix()
    rotated = Structure(
        Lattice(triclinic.lattice.matrix @ rotation.T), triclinic.species, triclinic.frac_coords
    )
    reference = tm.rotate(predict(net, triclinic), rotation)
    np.testing.assert_allclose(predict(net, rotated), reference, atol=1e-9 * abs(reference).max())


@pytest.mark.parametrize("readout", READOUTS)
def test_supercells_translations_and_permutations_change_nothing(triclinic, readout):
    net = outer_net(2, readout=readout)
    reference = predict(net, triclinic)
    moved = triclinic.copy()
    moved.translate_sites(list(range(len(moved))), [0.21, -0.3, 0.05])
    permuted = Structure.from_sites([triclinic[i] for i in (3, 1, 0, 2)])
    for variant in (moved, permuted, triclinic * (2, 1, 1), triclinic * (1, 2, 2)):
        np.testing.assert_allclose(predict(net, variant), reference, rtol=1e-9, atol=1e-12)


PEROVSKITE = Structure(
    Lattice.cubic(3.95),
    ["Ba", "Ti", "O", "O", "O"],
    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
)


def test_cubic_crystal_gets_an_isotropic_nonzero_ionic_tensor():
    for seed in (0, 5):
        eps0 = predict(outer_net(seed), PEROVSKITE)
        np.testing.assert_allclose(eps0, eps0[0, 0] * np.eye(3), atol=1e-9 * eps0[0, 0])
        assert eps0[0, 0] > 1e-3


def test_vector_readout_vanishes_on_centrosymmetric_sites():
    """Why psd_square_volume is the default: a per-atom 1o vector is zero at an inversion site."""
    eps0 = predict(outer_net(0, readout="psd_outer_volume"), PEROVSKITE)
    square = predict(outer_net(0, readout="psd_square_volume"), PEROVSKITE)
    assert np.abs(eps0).max() < 1e-12 * square[0, 0]


@pytest.mark.parametrize("readout", READOUTS)
def test_ionic_response_is_extensive_it_dilutes_with_volume(triclinic, readout):
    """Same atoms and neighbours, more volume (an empty slab): proportionally less response."""
    net = outer_net(3, readout=readout, cutoff=4.0)
    matrix = np.array(triclinic.lattice.matrix)

    def stretched(factor: float) -> Structure:
        lattice = np.vstack([matrix[:2], factor * matrix[2:]])
        return Structure(
            Lattice(lattice), triclinic.species, triclinic.cart_coords, coords_are_cartesian=True
        )

    # c stretched 3x and 6x: vacuum gaps wider than the cutoff, so both cells hold the same
    # graph and differ only in volume
    bulk_like, slab = stretched(3.0), stretched(6.0)
    graph_a = structure_to_graph(bulk_like, 4.0, allow_isolated=True)
    graph_b = structure_to_graph(slab, 4.0, allow_isolated=True)
    assert graph_a.num_edges == graph_b.num_edges > 0
    ratio = slab.volume / bulk_like.volume
    assert ratio == pytest.approx(2.0)
    np.testing.assert_allclose(predict(net, slab) * ratio, predict(net, bulk_like), rtol=1e-9)


def test_plain_head_for_ionic_has_no_identity_and_can_go_negative(triclinic):
    torch.manual_seed(0)
    config = ModelConfig(
        mul=6, lmax=2, readout="sum_volume", target="ionic", target_shift=-3.0, target_scale=1.0
    )
    eps0 = predict(AnisoNet(config).double().eval(), triclinic)
    # nothing keeps a plain 0e+2e head PSD: this is what the outer read-out rules out
    assert np.linalg.eigvalsh(eps0)[0] < 0


def test_target_stats_set_outer_scale_to_the_per_atom_response(triclinic):
    graphs = [structure_to_graph(triclinic), structure_to_graph(triclinic * (1, 1, 2))]
    targets = np.stack([tm.tensor_to_irreps(np.diag([6.0, 8.0, 10.0]))] * 2)
    stats = target_stats(targets, graphs, "psd_outer_volume", "ionic", outer_channels=4)
    density = len(triclinic) * stats["volume_per_atom"] / triclinic.volume
    assert stats["target_scale"] == pytest.approx(8.0 / density / 4)
    assert stats["target_shift"] == 0.0


def test_huber_log1p_loss_is_finite_for_zero_ionic_tensors_and_penalises_error():
    config = TrainConfig(loss="huber_log1p_eig")
    zero = torch.zeros(2, 6, dtype=torch.float64)
    target = torch.as_tensor(np.stack([tm.tensor_to_irreps(np.diag([0.0, 0.0, 50.0]))] * 2))
    assert float(training_loss(target, target, config)) == pytest.approx(0.0, abs=1e-12)
    wrong = training_loss(zero, target, config)
    assert torch.isfinite(wrong) and float(wrong) > 1.0
    # beyond delta the Huber term grows linearly, not quadratically
    big = training_loss(zero, 4 * target, TrainConfig(loss="huber_log1p_eig", log_eig_weight=0))
    small = training_loss(zero, target, TrainConfig(loss="huber_log1p_eig", log_eig_weight=0))
    assert float(big) / float(small) < 5.0


def test_model_file_records_its_target_and_old_files_load_as_electronic(tmp_path):
    config = ModelConfig(mul=4, lmax=1, readout="psd_outer_volume", target="ionic")
    net = AnisoNet(config)
    save_model(tmp_path / "ionic.pt", config, [net.state_dict()], "ionic", "0.1")
    assert load_model(tmp_path / "ionic.pt").config.target == "ionic"
    old = {k: v for k, v in ModelConfig(mul=4, lmax=1).to_dict().items()}
    old.pop("target")
    old.pop("outer_channels")
    assert ModelConfig.from_dict(old).target == "electronic"

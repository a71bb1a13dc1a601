"""Pretrained equivariant (SevenNet-0) node features: they rotate, and a network using them too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm
from anisoscreen.model.atom_features import cached_features
from anisoscreen.model.checkpoint import load_model, save_model
from anisoscreen.model.feature_sets import feature_channels, with_feature_channels
from anisoscreen.model.inference import Predictor
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig, split_orders
from anisoscreen.model.pretrained_features import SevenNetFeaturizer
from anisoscreen.structures_io import StructureRecord


@pytest.fixture(scope="module")
def featurizer() -> SevenNetFeaturizer:
    return SevenNetFeaturizer("sevennet-0")


@pytest.fixture(scope="module")
def net() -> AnisoNet:
    torch.manual_seed(0)
    config = ModelConfig(
        mul=4,
        lmax=2,
        embed_dim=8,
        radial_hidden=16,
        readout="psd_sum_volume",
        target_shift=1.0,
        target_scale=0.5,
        volume_per_atom=15.0,
        atom_features="sevennet-0",
    )
    return AnisoNet(with_feature_channels(config)).double().eval()


def rotated(structure: Structure, seed: int) -> tuple[Structure, np.ndarray]:
    r = Rotation.random(random_state=seed).as_matrix()
    turned = Structure(
        Lattice(structure.lattice.matrix @ r.T), structure.species, structure.frac_coords
    )
    return turned, r


def predict(net: AnisoNet, featurizer: SevenNetFeaturizer, structure: Structure) -> np.ndarray:
    graph = structure_to_graph(structure)
    graph.atom_features = featurizer([structure])[0]
    with torch.no_grad():
        return net.predict_tensor(collate([graph], torch.float64))[0].numpy()


def test_features_rotate_with_the_crystal(featurizer, triclinic):
    turned, r = rotated(triclinic, 0)
    base, moved = featurizer([triclinic, turned])  # one batch, one forward pass
    assert base.shape == (4, 480) and base.dtype == np.float32
    blocks = split_orders(torch.from_numpy(base).double(), featurizer.orders)
    moved_blocks = split_orders(torch.from_numpy(moved).double(), featurizer.orders)
    rotation = torch.from_numpy(r)
    for l in (0, 1, 2):
        assert blocks[l].abs().max() > 1.0  # every order carries information
        wigner = o3.Irrep(l, (-1) ** l).D_from_matrix(rotation)
        expected = torch.einsum("ij,njc->nic", wigner, blocks[l])
        scale = float(blocks[l].abs().max())
        assert float((moved_blocks[l] - expected).abs().max()) < 1e-5 * scale


def test_scalar_feature_set_is_the_invariant_part_of_the_full_one(featurizer, triclinic):
    scalars = SevenNetFeaturizer("sevennet-0-scalars")
    turned, _ = rotated(triclinic, 3)
    base, moved = scalars([triclinic, turned])
    assert base.shape == (4, 128) and feature_channels("sevennet-0-scalars") == [128]
    np.testing.assert_allclose(base, featurizer([triclinic])[0][:, :128], atol=1e-6)
    np.testing.assert_allclose(moved, base, atol=1e-5 * np.abs(base).max())
    # SevenNet-l3i5's invariant channels: another potential, the same contract
    other, other_moved = SevenNetFeaturizer("sevennet-l3i5-scalars")([triclinic, turned])
    assert other.shape == (4, 128) and np.abs(other - base).max() > 1e-2
    np.testing.assert_allclose(other_moved, other, atol=1e-5 * np.abs(other).max())


def test_features_of_a_supercell_repeat_those_of_the_cell(featurizer, triclinic):
    supercell = triclinic * (1, 2, 1)  # pymatgen lists the images of each site together
    cell, big = featurizer([triclinic, supercell])
    np.testing.assert_allclose(big[0::2], cell, atol=1e-5 * np.abs(cell).max())
    np.testing.assert_allclose(big[1::2], cell, atol=1e-5 * np.abs(cell).max())


@pytest.mark.parametrize("seed", [1, 2])
def test_network_on_sevennet_features_rotates_its_tensor(net, featurizer, triclinic, seed):
    turned, r = rotated(triclinic, seed)
    expected = tm.rotate(predict(net, featurizer, triclinic), r)
    got = predict(net, featurizer, turned)
    assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max()
    assert np.ptp(tm.eigenvalues(got)) > 1e-4  # the l > 0 inputs do reach the output


def test_network_on_sevennet_features_is_supercell_invariant(net, featurizer, triclinic):
    cell = predict(net, featurizer, triclinic)
    np.testing.assert_allclose(predict(net, featurizer, triclinic * (2, 1, 1)), cell, atol=1e-4)


def test_equivariant_inputs_change_the_prediction(net, featurizer, triclinic):
    """The l = 1, 2 feature blocks are used: zeroing them changes the tensor."""
    graph = structure_to_graph(triclinic)
    features = featurizer([triclinic])[0]
    graph.atom_features = features
    scalars_only = structure_to_graph(triclinic)
    scalars_only.atom_features = np.concatenate([features[:, :128], 0 * features[:, 128:]], 1)
    with torch.no_grad():
        full = net.predict_tensor(collate([graph], torch.float64))
        partial = net.predict_tensor(collate([scalars_only], torch.float64))
    assert float((full - partial).abs().max()) > 1e-3


def test_cache_and_predictor_use_the_same_features(net, featurizer, triclinic, tmp_path):
    cache = tmp_path / "sevennet.npz"
    cached = cached_features([triclinic], ["k"], "sevennet-0", cache)[0]
    np.testing.assert_allclose(cached, featurizer([triclinic])[0], atol=1e-5)
    assert cache.is_file()
    path = tmp_path / "model.pt"
    save_model(path, net.config, [net.float().state_dict()], name="sevennet-tiny", version="0")
    net.double()
    predictor = Predictor(load_model(path), device="cpu")
    (doc,) = predictor.predict([StructureRecord("t-1", triclinic, "test")])
    np.testing.assert_allclose(
        np.array(doc.dielectric_tensor), predict(net, featurizer, triclinic), atol=1e-4
    )


def test_exfoliated_copies_get_the_features_of_their_own_cell(featurizer, tmp_path):
    """A model on pretrained features trains and is scored on the exfoliated copies too."""
    from anisoscreen.model.training.dataset import DielectricEntry
    from anisoscreen.model.training.exfoliated import exfoliated_copies, exfoliated_graphs

    bulk = Structure.from_spacegroup(
        "P6_3/mmc",
        Lattice.hexagonal(3.16, 12.29),
        ["Mo", "S"],
        [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]],
    )
    entry = DielectricEntry("mp-2815", "MoS2", bulk, np.diag([15.6, 15.6, 6.5]), band_gap=1.2)
    (copies,) = exfoliated_copies([entry], [0], (4.0, 12.0)).values()
    cache = tmp_path / "features.npz"
    graphs = exfoliated_graphs(copies, [entry], 5.0, "sevennet-0", cache)
    assert [g.band_gap for g in graphs] == [1.2, 1.2]
    for copy, graph in zip(copies, graphs, strict=True):
        # the opened cell's own features, not the bulk's: its atoms lost their neighbours across
        # the gap (float32 features up to ~25: equal to a few float32 steps, as summation
        # order differs between machines)
        np.testing.assert_allclose(
            graph.atom_features, featurizer([copy.structure])[0], rtol=1e-5, atol=5e-5
        )
    bulk_features = featurizer([bulk])[0]
    assert np.abs(graphs[1].atom_features - bulk_features).max() > 1e-2
    # and they are kept in the cache, beside the data set's own structures
    assert len(np.load(cache).files) == 2

"""Pretrained (CHGNet) atom features: invariance, failures, and an equivariant network using them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm
from anisoscreen.model.atom_features import AtomFeaturizer, cached_features
from anisoscreen.model.checkpoint import load_model, save_model
from anisoscreen.model.feature_sets import feature_channels, with_feature_channels
from anisoscreen.model.inference import PredictionFailure, Predictor
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig
from anisoscreen.structures_io import StructureRecord


@pytest.fixture(scope="module")
def featurizer() -> AtomFeaturizer:
    return AtomFeaturizer("chgnet-0.3.0")


def rotated(structure: Structure, seed: int) -> Structure:
    r = Rotation.random(random_state=seed).as_matrix()
    return Structure(
        Lattice(structure.lattice.matrix @ r.T), structure.species, structure.frac_coords
    )


def isolated_atom() -> Structure:
    return Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_features_are_per_atom_and_rotation_permutation_invariant(featurizer, triclinic):
    base, turned = featurizer([triclinic, rotated(triclinic, 0)])
    assert base.shape == (4, 64) and base.dtype == np.float32
    assert np.abs(base).max() > 0.1  # not a zero vector
    np.testing.assert_allclose(turned, base, atol=2e-5)
    order = [2, 0, 3, 1]
    permuted = Structure.from_sites([triclinic[i] for i in order])
    np.testing.assert_allclose(featurizer([permuted])[0], base[order], atol=2e-5)


def test_an_unfeaturisable_structure_gives_a_reason(featurizer, triclinic):
    results = featurizer.featurize_each([triclinic, isolated_atom()])
    assert isinstance(results[0], np.ndarray)
    assert isinstance(results[1], str) and "chgnet-0.3.0" in results[1]


def test_feature_cache_is_reused(triclinic, tmp_path, monkeypatch):
    cache = tmp_path / "features.npz"
    first = cached_features([triclinic], ["k1"], "chgnet-0.3.0", cache)
    assert cache.is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("anisoscreen.model.atom_features.AtomFeaturizer", refuse)
    np.testing.assert_array_equal(
        cached_features([triclinic], ["k1"], "chgnet-0.3.0", cache)[0], first[0]
    )


def test_network_with_atom_features_stays_equivariant(featurizer, triclinic):
    torch.manual_seed(0)
    config = with_feature_channels(ModelConfig(mul=4, lmax=2, atom_features="chgnet-0.3.0"))
    net = AnisoNet(config).double().eval()

    def predict(structure):
        graph = structure_to_graph(structure)
        graph.atom_features = featurizer([structure])[0]
        with torch.no_grad():
            return net.predict_tensor(collate([graph], torch.float64))[0].numpy()

    r = Rotation.random(random_state=1).as_matrix()
    turned = Structure(
        Lattice(triclinic.lattice.matrix @ r.T), triclinic.species, triclinic.frac_coords
    )
    reference = tm.rotate(predict(triclinic), r)
    # float32 CHGNet features bound the agreement, not the network
    assert np.abs(predict(turned) - reference).max() / np.abs(reference).max() < 1e-4
    with pytest.raises(ValueError, match="atom features"):
        net(collate([structure_to_graph(triclinic)], torch.float64))


def test_predictor_featurises_and_reports_failures(triclinic, tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(
        mul=4, lmax=1, atom_features="chgnet-0.3.0", elements=[7, 8, 11, 17, 31], target_shift=5.0
    )
    # saved without atom_feature_channels, as model files written before the field existed
    state = AnisoNet(with_feature_channels(config)).state_dict()
    path = save_model(tmp_path / "m.pt", config, [state], "feat", "0.1")
    predictor = Predictor(load_model(str(path)), device="cpu", batch_size=4)
    # a NaCl cell whose atoms are 10 A apart has no neighbour within CHGNet's 6 A either
    sparse = Structure(Lattice.cubic(20.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    out = list(
        predictor.predict(
            [
                StructureRecord("ok", triclinic, "test"),
                StructureRecord("sparse", sparse, "test"),
                StructureRecord("ok-rotated", rotated(triclinic, 2), "test"),
            ]
        )
    )
    assert [o.material_id for o in out] == ["ok", "sparse", "ok-rotated"]
    assert isinstance(out[1], PredictionFailure) and "isolated molecule or cluster" in out[1].error
    assert out[0].eps_poly == pytest.approx(out[2].eps_poly, rel=1e-4)

    # a structure the graph accepts but the potential refuses is a failure too, in its place
    real = predictor._featurizer.featurize_each
    predictor._featurizer.featurize_each = lambda structures: ["refused"] + real(structures[1:])
    again = list(
        predictor.predict(
            [StructureRecord("a", triclinic, "t"), StructureRecord("b", triclinic, "t")]
        )
    )
    assert isinstance(again[0], PredictionFailure) and again[0].error == "refused"
    assert again[1].material_id == "b" and again[1].eps_poly == pytest.approx(out[0].eps_poly)


def test_feature_widths_reach_the_network_through_its_config():
    assert feature_channels("chgnet-0.3.0") == [64]
    assert feature_channels("sevennet-0") == [128, 64, 32]
    bare = ModelConfig(mul=4, lmax=2, atom_features="chgnet-0.3.0")
    with pytest.raises(ValueError, match="atom_feature_channels"):
        AnisoNet(bare)
    filled = with_feature_channels(bare)
    assert filled.atom_feature_channels == [64]
    assert AnisoNet(filled).feature_embedding.in_features == 64
    assert with_feature_channels(ModelConfig()) == ModelConfig()  # no features: unchanged

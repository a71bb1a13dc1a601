"""The hybrid ionic network (issue 28, route c): a physics eps0 prior in, weighted, added."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from anisoscreen import tensor as tm
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import save_model
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig, prior_features
from anisoscreen.model.training.train import attach_physics_priors, start_from_model
from anisoscreen.schemas import structure_id

PRIOR = np.array([[30.0, 2.0, 0.0], [2.0, 12.0, 1.0], [0.0, 1.0, 5.0]])


CONFIG = {
    "mul": 6,
    "lmax": 2,
    "readout": "psd_square_volume",
    "target": "ionic",
    "volume_per_atom": 12.0,
    "target_scale": 3.0,
}


def hybrid_net(seed: int = 0) -> AnisoNet:
    torch.manual_seed(seed)
    return AnisoNet(ModelConfig(**CONFIG, physics_prior=True)).double().eval()


def predict(net: AnisoNet, structure: Structure, prior: np.ndarray | None) -> np.ndarray:
    graph = structure_to_graph(structure, allow_isolated=True)
    if prior is not None:
        graph.physics_prior = prior
    with torch.no_grad():
        return net.predict_tensor(collate([graph], torch.float64))[0].numpy()


def test_prior_features_are_invariant_and_zero_for_an_unknown_prior():
    rotation = Rotation.random(random_state=3).as_matrix()
    priors = torch.tensor(np.stack([PRIOR, tm.rotate(PRIOR, rotation), np.full((3, 3), np.nan)]))
    features, finite = prior_features(priors)
    np.testing.assert_allclose(features[0], features[1], atol=1e-10)
    assert features[0, -1] == 1.0  # known
    np.testing.assert_allclose(features[0, :3], np.log1p(np.linalg.eigvalsh(PRIOR)), atol=1e-10)
    assert torch.all(features[2] == 0) and torch.all(finite[2] == 0)


def test_the_prior_adds_w_p_with_w_between_zero_and_one(triclinic):
    net = hybrid_net(1)
    direct = predict(net, triclinic, None)
    added = predict(net, triclinic, PRIOR) - direct
    weight = added[0, 0] / PRIOR[0, 0]
    assert 0.0 < weight < 1.0
    np.testing.assert_allclose(added, weight * PRIOR, rtol=1e-8, atol=1e-10)
    assert np.linalg.eigvalsh(direct + added)[0] >= -1e-10


def test_the_hybrid_rotates_with_the_crystal_and_its_prior(triclinic):
    net = hybrid_net(2)
    rotation = Rotation.random(random_state=0).as_matrix()
    rotated = Structure(
        Lattice(triclinic.lattice.matrix @ rotation.T), triclinic.species, triclinic.frac_coords
    )
    reference = tm.rotate(predict(net, triclinic, PRIOR), rotation)
    turned = predict(net, rotated, tm.rotate(PRIOR, rotation))
    np.testing.assert_allclose(turned, reference, atol=1e-9 * abs(reference).max())


def test_a_hybrid_starts_from_the_direct_models_weights(triclinic, tmp_path):
    torch.manual_seed(5)
    direct = AnisoNet(ModelConfig(**CONFIG)).double().eval()
    save_model(tmp_path / "direct.pt", direct.config, [direct.state_dict()], "direct", "0.1")
    hybrid = hybrid_net(0)
    start_from_model(hybrid, str(tmp_path / "direct.pt"), seed=3)
    hybrid = hybrid.double().eval()
    # no prior: exactly the direct network (stored in float32)
    expected = predict(direct.float().double(), triclinic, None)
    np.testing.assert_allclose(predict(hybrid, triclinic, None), expected, rtol=1e-6)
    other = AnisoNet(ModelConfig(**{**CONFIG, "mul": 4}, physics_prior=True))
    with pytest.raises(AnisoscreenError, match=r"configuration differs in \['mul'\]"):
        start_from_model(other, str(tmp_path / "direct.pt"), seed=0)


def test_a_prior_needs_the_square_readout():
    with pytest.raises(ValueError, match="physics_prior needs the psd_square_volume"):
        AnisoNet(ModelConfig(readout="psd_sum_volume", physics_prior=True))


def test_priors_attach_by_structure_hash_and_a_missing_file_is_one_line(triclinic, tmp_path):
    other = triclinic.copy()
    other.translate_sites([0], [0.1, 0.0, 0.0])
    path = tmp_path / "priors.npz"
    np.savez(path, **{structure_id(triclinic): PRIOR})
    graphs = [structure_to_graph(s, allow_isolated=True) for s in (triclinic, other)]
    assert attach_physics_priors(graphs, [triclinic, other], path) == 1
    np.testing.assert_array_equal(graphs[0].physics_prior, PRIOR)
    assert graphs[1].physics_prior is None
    with pytest.raises(AnisoscreenError, match="physics priors .* not found"):
        attach_physics_priors(graphs, [triclinic, other], tmp_path / "none.npz")

"""Born charges predicted by a model with a Born-charge head (route (b) of the ionic refine)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.born_charges import predict_born_charge_members, predict_born_charges
from anisoscreen.model.checkpoint import load_model, save_model
from anisoscreen.model.nn.network import AnisoNet

sys.path.insert(0, str(Path(__file__).parent))

from test_born_head import tiny_born_config  # noqa: E402


def born_model_file(path, elements=(8, 12, 22, 38), members=2, head=True):
    """A small untrained model with the Born head (weights are random: behaviour, not values)."""
    config = tiny_born_config(born_head=head, elements=list(elements))
    states = []
    for seed in range(members):
        torch.manual_seed(seed)
        states.append(AnisoNet(config).state_dict())
    return save_model(path, config, states, "tiny-born", "0.0.1")


@pytest.fixture
def perovskite():
    lattice = Lattice.from_parameters(3.9, 4.0, 4.1, 89.0, 91.0, 90.5)
    coords = [
        [0.02, 0.01, 0.0],
        [0.5, 0.52, 0.49],
        [0.5, 0.5, 0.03],
        [0.5, 0.01, 0.5],
        [0, 0.5, 0.5],
    ]
    return Structure(lattice, ["Sr", "Ti", "O", "O", "O"], coords)


def test_charges_obey_the_sum_rule_follow_the_sites_and_average_the_members(perovskite, tmp_path):
    path = born_model_file(tmp_path / "born.pt")
    [charges] = predict_born_charges(path, [perovskite])
    assert charges.shape == (5, 3, 3)
    np.testing.assert_allclose(charges.sum(axis=0), 0.0, atol=1e-5)  # acoustic sum rule
    assert np.abs(charges).max() > 1e-3  # not trivially zero
    # the same crystal with its sites listed in another order: the charges follow the sites
    order = [3, 0, 4, 2, 1]
    shuffled = Structure(
        perovskite.lattice, [perovskite[i].species for i in order], perovskite.frac_coords[order]
    )
    [moved] = predict_born_charges(path, [shuffled])
    np.testing.assert_allclose(moved, charges[order], atol=1e-5)
    # the ensemble's charges are its members' mean; batching does not change them
    loaded = load_model(path)
    singles = []
    for network in loaded.networks:
        loaded_one = load_model(path)
        loaded_one.networks = [network]
        singles.append(predict_born_charges(loaded_one, [perovskite])[0])
    np.testing.assert_allclose(charges, np.mean(singles, axis=0), atol=1e-6)
    assert not np.allclose(singles[0], singles[1], atol=1e-4)
    # each member's charges, in the members' order (the refine stage's spread)
    [members] = predict_born_charge_members(path, [perovskite])
    assert members.shape == (2, 5, 3, 3)
    np.testing.assert_allclose(members, np.stack(singles), atol=1e-6)
    batched = predict_born_charges(loaded, [shuffled, perovskite], batch_size=2)
    np.testing.assert_allclose(batched[1], charges, atol=1e-5)
    np.testing.assert_allclose(batched[0], moved, atol=1e-5)


def test_models_without_the_head_and_unseen_elements_are_refused(perovskite, tmp_path):
    without = born_model_file(tmp_path / "plain.pt", head=False)
    with pytest.raises(AnisoscreenError, match="no Born-charge head"):
        predict_born_charges(without, [perovskite])
    narrow = born_model_file(tmp_path / "narrow.pt", elements=(8, 22))
    with pytest.raises(AnisoscreenError, match="not seen in training by tiny-born: Sr"):
        predict_born_charges(narrow, [perovskite])

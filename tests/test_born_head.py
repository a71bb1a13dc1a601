"""The auxiliary Born-charge head: equivariance, masking, training with it, old models."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from anisoscreen.cli import app
from anisoscreen.model.checkpoint import load_model, save_model
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig
from anisoscreen.model.training.dataset import clean_entries, load_entries
from anisoscreen.model.training.train import (
    TrainConfig,
    _born_loss,
    born_loss,
    born_targets,
    fit,
    prepare_graphs,
)

SHIPPED = ["anisonet-mp-v1", "anisonet-mp-v2", "anisonet-mp-v2-sevennet", "anisonet-mp-ionic-v1"]


def born_net(seed: int = 0, **fields) -> AnisoNet:
    torch.manual_seed(seed)
    config = ModelConfig(
        mul=6,
        lmax=2,
        readout="psd_square_volume",
        target="ionic",
        volume_per_atom=12.0,
        target_scale=3.0,
        born_head=True,
        born_scale=1.4,
        **fields,
    )
    return AnisoNet(config).double().eval()


def born_charges(net: AnisoNet, structure: Structure) -> np.ndarray:
    with torch.no_grad():
        graph = collate([structure_to_graph(structure, allow_isolated=True)], torch.float64)
        return net.forward_with_born(graph)[1].numpy()


def transformed(structure: Structure, matrix: np.ndarray) -> Structure:
    """The crystal with Cartesian coordinates mapped by ``matrix`` (rotation or inversion)."""
    return Structure(
        Lattice(structure.lattice.matrix @ matrix.T), structure.species, structure.frac_coords
    )


@pytest.fixture(scope="module")
def entries(shared_dir):
    cleaned, _ = clean_entries(load_entries(shared_dir / "data" / "mp_dielectric_tensors.json.gz"))
    with_born = [e for e in cleaned if e.born is not None][:8]
    without_born = [e for e in cleaned if e.born is None][:4]
    return with_born + without_born


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotating_the_crystal_rotates_each_born_tensor(triclinic, seed):
    net = born_net(seed)
    rotation = Rotation.random(random_state=seed).as_matrix()
    reference = born_charges(net, triclinic)
    rotated = born_charges(net, transformed(triclinic, rotation))
    expected = np.einsum("ab,nbc,dc->nad", rotation, reference, rotation)
    np.testing.assert_allclose(rotated, expected, atol=1e-9 * np.abs(reference).max())
    # a general tensor: symmetric and antisymmetric parts both present
    antisymmetric = reference - reference.transpose(0, 2, 1)
    assert np.abs(antisymmetric).max() > 1e-4 * np.abs(reference).max()
    assert np.abs(reference).max() > 1e-3


def test_inversion_leaves_born_charges_unchanged(triclinic):
    """Z* is a polar rank-2 tensor: even under inversion, its antisymmetric part too."""
    net = born_net(3)
    improper = -Rotation.random(random_state=7).as_matrix()
    reference = born_charges(net, triclinic)
    inverted = born_charges(net, transformed(triclinic, improper))
    expected = np.einsum("ab,nbc,dc->nad", improper, reference, improper)
    np.testing.assert_allclose(inverted, expected, atol=1e-9 * np.abs(reference).max())


def test_predicted_charges_obey_the_acoustic_sum_rule(triclinic):
    charges = born_charges(born_net(4), triclinic)
    assert charges.shape == (len(triclinic), 3, 3)
    np.testing.assert_allclose(charges.sum(axis=0), 0.0, atol=1e-12)


def test_charges_follow_the_site_order_of_each_structure(triclinic):
    """Atoms are sorted by element inside the network; charges come back in site order."""
    net = born_net(5)
    reference = born_charges(net, triclinic)
    permutation = [3, 1, 0, 2]
    shuffled = Structure(
        triclinic.lattice,
        [triclinic.species[i] for i in permutation],
        triclinic.frac_coords[permutation],
    )
    np.testing.assert_allclose(born_charges(net, shuffled), reference[permutation], atol=1e-12)


def test_unmasked_atoms_give_no_loss_and_no_gradient():
    rng = np.random.default_rng(0)
    predicted = torch.tensor(rng.normal(size=(5, 3, 3)), requires_grad=True)
    target = torch.tensor(rng.normal(size=(5, 3, 3)))
    mask = torch.tensor([True, False, True, False, False])
    loss = born_loss(predicted, target, mask, scale=1.3)
    loss.backward()
    loss = loss.detach()
    assert predicted.grad is not None
    assert torch.all(predicted.grad[~mask] == 0)
    assert torch.all(predicted.grad[mask].abs().sum(dim=(1, 2)) > 0)
    # any target on the unmasked atoms gives the same loss
    other = target.clone()
    other[~mask] = 1e6
    assert float(born_loss(predicted, other, mask, 1.3).detach()) == float(loss.detach())
    # the value: the Huber loss (delta 1) of the scaled errors of the masked atoms
    error = ((predicted[mask] - target[mask]) / 1.3).detach().numpy()
    expected = np.where(np.abs(error) < 1, 0.5 * error**2, np.abs(error) - 0.5).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_structures_without_born_charges_leave_the_head_untouched(entries):
    """A batch without Born charges gives an exact zero and zero gradients."""
    net = born_net(6).float().train()
    without = [e for e in entries if e.born is None]
    graphs = prepare_graphs(without, net.config.cutoff)
    _, predicted = net.forward_with_born(collate(graphs))
    target, mask = born_targets(
        [e.born for e in without], [g.num_nodes for g in graphs], torch.device("cpu")
    )
    assert not bool(mask.any())
    loss = born_loss(predicted, target, mask, net.config.born_scale)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert net.born_head is not None
    for parameter in net.born_head.parameters():
        assert parameter.grad is not None and torch.all(parameter.grad == 0)


def test_born_targets_line_up_with_the_batch_atoms(entries):
    graphs = prepare_graphs(entries[6:10], 5.0)
    born = [e.born for e in entries[6:10]]
    target, mask = born_targets(born, [g.num_nodes for g in graphs], torch.device("cpu"))
    sizes = [g.num_nodes for g in graphs]
    assert target.shape == (sum(sizes), 3, 3)
    start = 0
    for charges, size in zip(born, sizes, strict=True):
        block = slice(start, start + size)
        assert bool(mask[block].all()) == (charges is not None)
        if charges is not None:
            np.testing.assert_allclose(target[block].numpy(), charges, rtol=1e-6)
        start += size


def test_prediction_does_not_run_the_born_head(triclinic):
    """``forward`` (all prediction paths) skips the head; the tensor is the head-less one."""
    net = born_net(8)
    calls = []
    assert net.born_head is not None
    net.born_head.register_forward_hook(lambda *args: calls.append(1))
    graph = collate([structure_to_graph(triclinic, allow_isolated=True)], torch.float64)
    with torch.no_grad():
        tensor = net.predict_tensor(graph)
    assert calls == []
    torch.manual_seed(8)
    plain = AnisoNet(replace(net.config, born_head=False)).double().eval()
    # the head is built last: the other weights are initialised identically
    with torch.no_grad():
        np.testing.assert_array_equal(plain.predict_tensor(graph).numpy(), tensor.numpy())
        irreps, _ = net.forward_with_born(graph)
        np.testing.assert_array_equal(irreps.numpy(), net(graph).numpy())
    assert calls == [1]


def test_a_model_without_the_head_refuses_born_output(triclinic):
    torch.manual_seed(0)
    net = AnisoNet(ModelConfig(mul=4, lmax=2, readout="psd_square_volume", target="ionic"))
    assert net.born_head is None
    graph = collate([structure_to_graph(triclinic, allow_isolated=True)])
    with pytest.raises(ValueError, match="no Born-charge head"):
        net.forward_with_born(graph)


def tiny_born_config(**fields) -> ModelConfig:
    """A small ionic network with the Born head, fast enough to train in a test."""
    values = dict(
        mul=4,
        lmax=2,
        radial_hidden=16,
        embed_dim=8,
        readout="psd_square_volume",
        target="ionic",
        volume_per_atom=20.0,
        born_head=True,
        born_scale=1.35,
    )
    return ModelConfig(**{**values, **fields})


def born_split(entries):
    """Training and validation sets that both mix entries with and without Born charges."""
    graphs = prepare_graphs(entries, 5.0)
    targets = np.stack([e.target_irreps("ionic") for e in entries])
    born = [e.born for e in entries]
    train_idx, val_idx = [0, 1, 2, 3, 4, 5, 8, 9, 10], [6, 7, 11]
    train = ([graphs[i] for i in train_idx], targets[train_idx])
    validation = ([graphs[i] for i in val_idx], targets[val_idx])
    return train, validation, ([born[i] for i in train_idx], [born[i] for i in val_idx])


def test_training_with_born_weight_learns_the_charges_and_resumes(entries, tmp_path):
    config = tiny_born_config(target_scale=1.0)
    train_config = TrainConfig(
        loss="huber_log1p_eig", batch_size=4, max_epochs=2, born_weight=10.0, lr=0.01
    )
    checkpoint = tmp_path / "born.ckpt"
    train, validation, split_born = born_split(entries)
    one = replace(train_config, max_epochs=1)
    fit(config, one, train, validation, checkpoint, "cpu", born=split_born)
    net, state = fit(config, train_config, train, validation, checkpoint, "cpu", born=split_born)
    assert state.finished and state.epoch == 2 and len(state.history) == 2
    for record in state.history:
        assert np.isfinite(record["train_born_loss"]) and record["train_born_loss"] > 0
        assert np.isfinite(record["val_born_loss"])  # validation holds entries with charges
    # resuming gives the same run as an uninterrupted one
    _, straight = fit(
        config, train_config, train, validation, tmp_path / "straight.ckpt", "cpu", born=split_born
    )
    assert [r["val_loss"] for r in straight.history] == pytest.approx(
        [r["val_loss"] for r in state.history], rel=1e-5
    )
    # the saved model keeps the head and loads strictly
    save_model(tmp_path / "model.pt", net.config, [net.state_dict()], "born", "0.0.1")
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.config.born_head and loaded.networks[0].born_head is not None


def test_born_selection_picks_the_epoch_of_the_lowest_validation_born_loss(entries, tmp_path):
    config = tiny_born_config()
    train, validation, split_born = born_split(entries)
    train_config = TrainConfig(
        loss="huber_log1p_eig",
        batch_size=4,
        max_epochs=4,
        born_weight=10.0,
        lr=0.02,
        selection="born",
    )
    net, state = fit(
        config, train_config, train, validation, tmp_path / "b.ckpt", "cpu", born=split_born
    )
    born_losses = [r["val_born_loss"] for r in state.history]
    assert state.best_epoch == int(np.argmin(born_losses))
    assert state.best_val_loss == pytest.approx(min(born_losses))
    # the returned network holds that epoch's weights: its validation Born loss is the minimum
    assert _born_loss(net, validation[0], split_born[1], torch.device("cpu")) == pytest.approx(
        min(born_losses), rel=1e-5
    )
    with pytest.raises(ValueError, match="selection 'born' needs born_weight > 0"):
        fit(
            config,
            replace(train_config, born_weight=0.0),
            train,
            validation,
            tmp_path / "c.ckpt",
            "cpu",
        )


def test_born_weight_needs_the_head_and_the_charges(entries, tmp_path):
    graphs = prepare_graphs(entries[:4], 5.0)
    targets = np.stack([e.target_irreps("ionic") for e in entries[:4]])
    config = ModelConfig(mul=4, lmax=2, readout="psd_square_volume", target="ionic")
    with pytest.raises(ValueError, match="born_weight > 0"):
        fit(
            config,
            TrainConfig(max_epochs=1, born_weight=1.0),
            (graphs, targets),
            (graphs, targets),
            tmp_path / "x.ckpt",
            "cpu",
        )


def test_cli_trains_an_ionic_model_with_the_born_target(shared_dir, tmp_path):
    args = ["train", "--target", "ionic", "--name", "tiny-born", "--output-dir", str(tmp_path)]
    args += ["--mul", "4", "--lmax", "2", "--max-entries", "40", "--max-epochs", "1"]
    args += ["--batch-size", "16", "--device", "cpu", "--born-weight", "5", "--seed", "0"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "born train" in out.output
    model = load_model(tmp_path / "tiny-born" / "model.pt")
    assert model.config.born_head
    # the RMS Born component of the training entries with charges (about 1.35 on the full set)
    assert 0.5 < model.config.born_scale < 3.0
    assert model.metadata["train_config"]["born_weight"] == 5.0
    # the card reports the head's test error next to the element-mean reference
    born = model.metadata["metrics"]["test_born"]
    assert born["n_structures"] >= 1 and born["n_sites"] >= born["n_structures"]
    # one epoch on 40 entries: not trained yet, but the errors are finite and of charge size
    assert 0 < born["born_mae"] < 2 * born["zero_mae"]
    assert 0 < born["element_mean_mae"] < 2 * born["zero_mae"]
    card = (tmp_path / "tiny-born" / "MODEL_CARD.md").read_text()
    assert "## Born effective charges (test split)" in card
    assert f"**{born['born_mae']:.3f}**" in card


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_load_without_a_born_head(name):
    model = load_model(name)
    assert not model.config.born_head
    assert all(net.born_head is None for net in model.networks)

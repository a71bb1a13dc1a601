"""Out-of-distribution campaigns: regimes held out of training, the residual GP learner,
calibrated sigma and batch diversity in the embedding space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen.campaign.acquisition import DiversityGuard, EmbeddingDiversity, Greedy
from anisoscreen.campaign.residual import (
    EmbeddingSpace,
    Posterior,
    ResidualGP,
    coverage,
    loo_scale,
    posterior_samples,
)

pytestmark = pytest.mark.filterwarnings("ignore")

ORACLE = Path(__file__).parent / "data" / "campaign_oracle_40.json.gz"


def _shifted_regime(n: int, seed: int):
    """Embeddings of a new regime and a residual the base model misses: smooth in them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    residual = 0.8 * np.sin(1.5 * x[:, 0]) + 0.5 * x[:, 1] + 0.05 * rng.normal(size=n)
    return x, residual


def test_residual_gp_learns_a_shifted_regime_from_a_few_labels():
    # a residual smooth over the whole regime, labels drawn at random: learnt when the length
    # scale may grow (the default bounds it, for a campaign's biased picks: test_campaign_gp)
    x, residual = _shifted_regime(400, 0)
    labelled = np.arange(40)
    gp = ResidualGP(max_length=20.0).fit(x[labelled], residual[labelled])
    mean, sigma = gp.predict(x[40:])
    before = np.abs(residual[40:]).mean()  # the frozen model's error (residual 0)
    after = np.abs(residual[40:] - mean).mean()
    assert after < 0.5 * before
    # sigma is calibrated on new data: ~95 % inside 2 sigma, and it points at the errors
    assert 0.85 <= coverage(residual[40:], mean, sigma) <= 1.0
    error = np.abs(residual[40:] - mean)
    assert error[sigma > np.median(sigma)].mean() > error[sigma <= np.median(sigma)].mean()


def test_residual_gp_sigma_grows_away_from_the_labels():
    x, residual = _shifted_regime(60, 1)
    gp = ResidualGP().fit(x, residual)
    _, near = gp.predict(x[:5] + 0.01)
    _, far = gp.predict(x[:5] + 20.0)
    assert (far > 3 * near).all()
    assert far == pytest.approx(np.sqrt(gp.amplitude_**2 + gp.noise_**2), rel=1e-6)


def test_leave_one_out_matches_refitting_without_each_label():
    x, residual = _shifted_regime(25, 2)
    gp = ResidualGP().fit(x, residual)
    loo_mean, loo_sigma = gp.loo()
    for i in (0, 7, 24):
        keep = np.arange(25) != i
        k = gp._kernel(x[keep], x[keep], gp.length_, gp.amplitude_)
        k += (gp.noise_**2 + 1e-9) * np.eye(24)
        alpha = np.linalg.solve(k, residual[keep] - gp.offset_)
        k_star = gp._kernel(x[i : i + 1], x[keep], gp.length_, gp.amplitude_)
        mean = gp.offset_ + (k_star @ alpha)[0]
        var = gp.amplitude_**2 + gp.noise_**2 - (k_star @ np.linalg.solve(k, k_star.T))[0, 0]
        assert loo_mean[i] == pytest.approx(mean, abs=1e-8)
        assert loo_sigma[i] == pytest.approx(np.sqrt(var), rel=1e-6)


def test_sigma_scale_and_coverage():
    rng = np.random.default_rng(3)
    truth = rng.normal(scale=2.0, size=2000)
    assert loo_scale(truth, np.zeros(2000), np.ones(2000)) == pytest.approx(2.0, rel=0.05)
    assert coverage(truth, np.zeros(2000), 2.0 * np.ones(2000)) == pytest.approx(0.954, abs=0.02)
    assert loo_scale(truth[:2], np.zeros(2), np.ones(2)) == 1.0  # too few labels: unchanged


def test_posterior_samples_have_the_posterior_moments():
    posterior = Posterior(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.0, 2.0]))
    draws = posterior_samples(posterior, 16, np.random.default_rng(0))
    assert draws.shape == (16, 3)
    np.testing.assert_allclose(draws.mean(axis=0), posterior.mean)
    np.testing.assert_allclose(draws.std(axis=0, ddof=1), posterior.sigma, atol=1e-12)


def test_embedding_space_is_fitted_without_labels_and_keeps_distances_ordered():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(200, 10)) * np.arange(1, 11)
    space = EmbeddingSpace(components=10).fit(features)
    coords = space.transform(features)
    assert coords.shape == (200, 10)
    assert np.mean((coords**2).sum(axis=1)) == pytest.approx(1.0, rel=1e-6)


def _two_clusters():
    """Ten near-identical top candidates in one cluster, slightly worse ones far away."""
    rng = np.random.default_rng(5)
    coords = np.vstack([rng.normal(scale=0.01, size=(10, 2)), rng.normal(size=(10, 2)) * 3 + 10])
    means = np.concatenate([np.linspace(10, 9, 10), np.linspace(8, 7, 10)])
    return coords, means[None, :]


def test_embedding_diversity_spreads_the_batch_over_the_embedding():
    coords, values = _two_clusters()
    available = np.ones(20, dtype=bool)
    plain = Greedy().select(values, available, 4, np.random.default_rng(0))
    assert plain == [0, 1, 2, 3]  # all from the one cluster
    guard = EmbeddingDiversity(coords=coords, radius=1.0)
    diverse = Greedy().select(values, available, 4, np.random.default_rng(0), guard)
    assert diverse[0] == 0  # the best is still first
    assert sum(i < 10 for i in diverse) == 1
    picked = coords[diverse]
    distances = np.linalg.norm(picked[:, None] - picked[None], axis=-1)
    assert distances[np.triu_indices(4, k=1)].min() >= 1.0


def test_embedding_diversity_relaxes_to_fill_the_batch_and_keeps_the_group_cap():
    coords, values = _two_clusters()
    available = np.ones(20, dtype=bool)
    groups = ["a"] * 10 + ["b"] * 10
    guard = EmbeddingDiversity(groups, 6, coords, radius=1000.0)
    picks = Greedy().select(values, available, 12, np.random.default_rng(0), guard)
    assert len(picks) == 12 and len(set(picks)) == 12
    assert sum(i < 10 for i in picks) == 6  # the group cap still holds after relaxing
    assert DiversityGuard().relaxed() is None


def test_embedding_guard_radius_from_the_pool():
    coords = np.random.default_rng(6).normal(size=(300, 3))
    guard = EmbeddingDiversity.from_pool(coords, quantile=0.1)
    sample = np.linalg.norm(coords[:, None] - coords[None], axis=-1)[np.triu_indices(300, k=1)]
    assert guard.radius == pytest.approx(np.quantile(sample, 0.1), rel=0.05)


def _layered() -> Structure:
    """Two MoS2-like layers far apart along c: a stack of 2D layers with vacuum."""
    lattice = Lattice.hexagonal(3.16, 20.0)
    return Structure(
        lattice,
        ["Mo", "S", "S"],
        [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.17], [2 / 3, 1 / 3, 0.33]],
    )


def test_regimes_tag_layered_and_chalcogenide_structures():
    from anisoscreen.model.training.regimes import in_regime

    rock_salt = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    selenide = Structure(Lattice.cubic(5.9), ["Pb", "Se"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert in_regime(_layered(), "layered") and not in_regime(rock_salt, "layered")
    assert in_regime(selenide, "chalcogenide") and not in_regime(rock_salt, "chalcogenide")


def test_a_held_out_regime_is_in_neither_training_nor_validation(shared_dir):
    from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
    from anisoscreen.model.training.exfoliated import exfoliated_copies
    from anisoscreen.model.training.pipeline import split_without
    from anisoscreen.model.training.regimes import regime_indices

    entries, _ = clean_entries(load_entries(shared_dir / "data" / "mp_dielectric_tensors.json.gz"))
    entries = entries[:300]
    held_out = regime_indices(entries, "chalcogenide")
    assert len(held_out) > 10
    full = random_split(len(entries), 42)
    split = split_without(full, held_out)
    for key in ("train", "validation"):
        assert not set(split[key]) & set(held_out)
        assert set(split[key]) | (set(full[key]) & set(held_out)) == set(full[key])
    np.testing.assert_array_equal(split["test"], full["test"])
    # the exfoliation augmentation draws from the split, so no held-out copy is trained on
    layered = regime_indices(entries[:120], "layered")
    copies = exfoliated_copies(entries, split_without(random_split(120, 42), layered)["train"])
    assert not set(copies) & set(layered)


def test_forward_with_embedding_is_one_pass_and_rotation_invariant(tiny_model, triclinic):
    import torch

    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.nn.graph import collate, structure_to_graph

    model = load_model(tiny_model[0] / "model.pt")
    net = model.networks[0]
    rotation = np.linalg.qr(np.random.default_rng(7).normal(size=(3, 3)))[0]
    rotation *= np.sign(np.linalg.det(rotation))
    turned = Structure(
        Lattice(triclinic.lattice.matrix @ rotation.T), triclinic.species, triclinic.frac_coords
    )
    batch = collate([structure_to_graph(s, model.config.cutoff) for s in (triclinic, turned)])
    with torch.no_grad():
        irreps, embedding = net.forward_with_embedding(batch)
        torch.testing.assert_close(irreps, net(batch))
    assert embedding.shape == (2, net.embedding_dim)
    torch.testing.assert_close(embedding[0], embedding[1], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_simulated_campaign_with_the_residual_gp_and_embedding_diversity(tiny_ensemble):
    from anisoscreen.campaign.simulate import SimulationConfig, load_oracle, simulate
    from anisoscreen.screening.objectives import tensor_values
    from anisoscreen.settings import get_settings

    oracle = load_oracle(ORACLE)
    config = SimulationConfig(
        strategy="ucb",
        rounds=3,
        batch_size=5,
        seed=0,
        model=str(tiny_ensemble),
        learner="gp",
        diversity="embedding",
    )
    report = simulate(oracle, config, get_settings().shared, evaluate_final=True)
    truth = {e.material_id: float(tensor_values(e.dielectric_tensor, "ar")) for e in oracle}
    picked = [m for r in report["rounds"] for m in r["picked"]]
    assert len(picked) == len(set(picked)) == 15
    assert report["rounds"][-1]["best"] == pytest.approx(max(truth[m] for m in picked))
    # the networks stay frozen: every round names the starting model
    assert {r["model"] for r in report["rounds"]} == {"tiny-ensemble 1.0.0"}
    assert report["rounds"][0]["sigma_scale"] is None  # no labels yet
    assert all(r["sigma_scale"] > 0 for r in report["rounds"][1:])
    assert all(0.0 <= r["coverage_2sigma"] <= 1.0 for r in report["rounds"])
    assert report["final_mae_unlabelled"] > 0


@pytest.mark.slow
def test_readout_only_finetune_changes_the_readout_alone(tiny_ensemble, tmp_path):
    import torch

    from anisoscreen.campaign.finetune import FinetuneConfig, LabelledEntry, finetune_model
    from anisoscreen.campaign.simulate import load_oracle
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.dataset import DielectricEntry

    model = load_model(tiny_ensemble / "model.pt")
    labels = [
        LabelledEntry(DielectricEntry(e.material_id, "", e.structure, e.dielectric_tensor))
        for e in load_oracle(ORACLE)[:6]
        if all(el.Z in set(model.config.elements) for el in e.structure.composition.elements)
    ]
    config = FinetuneConfig(epochs=1, replay=0, label_repeats=2, readout_only=True)
    tuned = load_model(finetune_model(model, labels, [], config, tmp_path, "ro", "r1"))
    before, after = model.networks[0].state_dict(), tuned.networks[0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("output.") for k in changed)
    assert tuned.metadata["finetune"]["config"]["label_repeats"] == 2

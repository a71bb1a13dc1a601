"""A real campaign with the residual-GP learner (issue 27): the networks stay frozen, each
selection refits the GP on every label so far, through the same code as the simulation; DFT
is stood in for by known labels (:class:`~anisoscreen.campaign.standin.OracleRunner`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from anisoscreen import tensor as tmath
from anisoscreen.campaign import local_run
from anisoscreen.campaign.cache import read_embeddings, read_values
from anisoscreen.campaign.learner import (
    LogSpace,
    pool_coordinates,
    posterior_values,
    residual_posterior,
)
from anisoscreen.campaign.rounds import load_campaign, start_campaign, step_campaign
from anisoscreen.campaign.simulate import load_oracle
from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import CampaignDoc, ValidationDoc
from anisoscreen.settings import get_settings
from anisoscreen.store import ResultsStore

sys.path.insert(0, str(Path(__file__).parent))

from campaign_helpers import ORACLE, oracle_pool, record_calls  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def gp_campaign(tmp_path, monkeypatch, tiny_ensemble):
    """A started ``--local`` GP campaign on the oracle's predictable structures (batch 3,
    budget 9); returns the settings, the stand-in, the prediction passes, the true a_r."""
    settings, oracle, runner = oracle_pool(tmp_path, monkeypatch)
    from anisoscreen.model.inference import Predictor

    # one entry per prediction pass: the number of graphs it ran
    passes = record_calls(
        monkeypatch, Predictor, "predict_graphs_with_embeddings", lambda _, graphs: len(graphs)
    )
    doc = CampaignDoc(
        name="gp1",
        source="test",
        strategy="greedy",
        batch_size=3,
        budget=9,
        max_per_group=0,
        base_model=str(tiny_ensemble),
        current_model=str(tiny_ensemble),
        local=True,
        learner="gp",
    )
    predicted = start_campaign(doc, settings)
    assert predicted >= 12 and passes == [predicted]  # one pass: documents and embeddings
    truth = {e.material_id: float(tmath.anisotropy_ratio(e.dielectric_tensor)) for e in oracle}
    return settings, runner, passes, truth


@pytest.mark.slow
def test_a_gp_round_refits_on_the_labels_and_picks_from_the_posterior(gp_campaign):
    settings, runner, passes, truth = gp_campaign
    for _ in range(3):
        assert "done" in step_campaign("gp1", settings)
    doc = load_campaign("gp1", settings)
    assert "budget spent" in step_campaign("gp1", settings)
    # the networks stay frozen: one prediction pass for the whole campaign, no new version
    assert len(passes) == 1
    assert doc.current_model == doc.base_model
    assert all(r.new_model is None and r.model == doc.rounds[0].model for r in doc.rounds)
    # every pick validated once, by the stand-in, and labelled with its a_r
    picked = [p.material_id for r in doc.rounds for p in r.picks]
    assert len(picked) == len(set(picked)) == 9 and sorted(runner.calls) == sorted(picked)
    for pick in (p for r in doc.rounds for p in r.picks):
        assert pick.state == "completed"
        assert pick.observed == pytest.approx(truth[pick.material_id], rel=1e-9)
    assert doc.rounds[0].sigma_scale is None  # no labels yet
    # round 2, rebuilt from the cache and the labels of rounds 0 and 1 by the learner's own
    # functions (the simulation's): the greedy picks are the posterior mean's best
    (path,) = (settings.data_dir / "campaigns" / "gp1").glob("values-*.npz")
    ids, values, _, _ = read_values(path)
    logged = LogSpace("ar")
    base = logged.forward(values.mean(axis=0))
    coords = pool_coordinates(read_embeddings(path), base)
    earlier = [p for r in doc.rounds[:2] for p in r.picks]
    labelled = np.array([ids.index(p.material_id) for p in earlier])
    observed = logged.forward(np.array([p.observed for p in earlier]))
    posterior, scale = residual_posterior(base, coords, labelled, observed)
    assert doc.rounds[2].sigma_scale == pytest.approx(scale)
    samples = logged.inverse(posterior_values(posterior, (doc.seed, 2, 7)))
    open_ = [i for i in range(len(ids)) if i not in set(labelled)]
    best = sorted(open_, key=lambda i: -posterior.mean[i])[:3]  # greedy on the log mean
    assert [p.material_id for p in doc.rounds[2].picks] == [ids[i] for i in best]
    for pick in doc.rounds[2].picks:
        i = ids.index(pick.material_id)
        assert pick.predicted == pytest.approx(samples.mean(axis=0)[i], rel=1e-9)
        assert pick.spread == pytest.approx(samples.std(axis=0, ddof=1)[i], rel=1e-9)
    # the GP moved the ranking away from the frozen ensemble's own
    assert not np.allclose(posterior.mean, base)


@pytest.mark.slow
def test_a_gp_step_killed_after_a_local_run_resumes_without_running_it_again(
    gp_campaign, monkeypatch
):
    settings, runner, _, _ = gp_campaign
    assert "done" in step_campaign("gp1", settings)  # round 0: labels for the GP

    def crash_after_second(*args, **kwargs):
        reasons = runner(*args, **kwargs)
        if len(runner.calls) == 5:  # the second pick of round 1 ran; its state is not saved
            raise KeyboardInterrupt
        return reasons

    monkeypatch.setattr(local_run, "run_local_validation", crash_after_second)
    with pytest.raises(KeyboardInterrupt):
        step_campaign("gp1", settings)
    doc = load_campaign("gp1", settings)
    assert [p.state for p in doc.rounds[1].picks] == ["submitted", "prepared", "selected"]
    assert "round 1 done: 3/3 labelled" in step_campaign("gp1", settings)
    assert len(runner.calls) == len(set(runner.calls)) == 6  # nothing validated twice
    with ResultsStore(settings) as results:
        stored = results.query(ValidationDoc, {})
    assert len(stored) == 6 and all(d.is_valid for d in stored)
    assert load_campaign("gp1", settings).rounds[1].sigma_scale is not None


@pytest.mark.slow
def test_an_unknown_learner_fails_before_anything_is_stored(tmp_path, tiny_ensemble):
    settings = get_settings(store="monty", data_dir=tmp_path / "data")
    doc = CampaignDoc(
        name="bad", base_model=str(tiny_ensemble), current_model=str(tiny_ensemble), learner="x"
    )
    with pytest.raises(AnisoscreenError, match="unknown learner 'x'"):
        start_campaign(doc, settings)
    with ResultsStore(settings) as results:
        assert results.query(CampaignDoc, {}) == []


def test_the_values_cache_keeps_the_embeddings_of_the_same_pass(tmp_path):
    from anisoscreen.campaign.cache import write_values

    path = tmp_path / "values-x.npz"
    values, embeddings = np.arange(6.0).reshape(3, 2), np.arange(8.0).reshape(2, 4)
    write_values(path, ["a", "b"], values, "m", True, embeddings)
    np.testing.assert_array_equal(read_embeddings(path), embeddings)
    assert read_values(path)[0] == ["a", "b"]
    write_values(path, ["a", "b"], values, "m", True)  # a finetune campaign keeps none
    assert read_embeddings(path) is None and read_values(path) is not None
    write_values(path, ["a", "b"], values, "m", True, np.ones((3, 4)))  # not one row per id
    assert read_embeddings(path) is None
    assert read_embeddings(tmp_path / "missing.npz") is None


def test_geometry_columns_tell_a_padded_layer_from_its_stack():
    from pymatgen.core import Lattice, Structure

    from anisoscreen.campaign.learner import geometry_columns

    def layer(c: float) -> Structure:
        return Structure(
            Lattice.hexagonal(3.2, c), ["Mo", "S", "S"], [[0, 0, 0.5], [1 / 3, 2 / 3, 0.5 + 1.6 / c],
            [1 / 3, 2 / 3, 0.5 - 1.6 / c]],
        )  # fmt: skip

    stack, padded = geometry_columns([layer(6.2), layer(26.2)])
    assert stack[0] == pytest.approx(0.0) and padded[0] > 0.6  # vacuum fraction
    assert padded[1] == pytest.approx(np.log(26.2 - 3.2), abs=1e-6)  # log widest empty slab
    assert stack[1] == pytest.approx(np.log(6.2 - 3.2), abs=1e-6)
    assert geometry_columns([]).shape == (0, 2)


def test_residual_posterior_is_the_gp_on_the_residual_with_loo_scaled_sigma():
    from anisoscreen.campaign.residual import ResidualGP, loo_scale

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    base = 0.3 * x[:, 0]
    truth = base + 0.5 * np.sin(x[:, 1]) + 0.2
    labelled = np.arange(0, 60, 3)
    posterior, scale = residual_posterior(base, x, labelled, truth[labelled])
    gp = ResidualGP().fit(x[labelled], truth[labelled] - base[labelled])
    mean, sigma = gp.predict(x)
    np.testing.assert_allclose(posterior.mean, base + mean)
    assert scale == pytest.approx(loo_scale(truth[labelled] - base[labelled], *gp.loo()))
    np.testing.assert_allclose(posterior.sigma, sigma * scale)
    # a residual smooth over the whole pool is learnt only near the labels (the length scale is
    # bounded for a campaign's biased picks; unbounded, test_campaign_ood learns it everywhere)
    rest = np.setdiff1d(np.arange(60), labelled)
    before = np.abs(base[rest] - truth[rest]).mean()
    assert np.abs(posterior.mean[rest] - truth[rest]).mean() < 0.9 * before


def test_a_correction_learnt_from_one_family_stays_local():
    """A campaign's picks share one bias: the GP fixes their family, not the whole pool."""
    from anisoscreen.campaign.residual import ResidualGP

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x /= np.sqrt((x**2).sum(axis=1).mean())  # the pool's RMS radius is 1, as EmbeddingSpace's
    base = 0.3 * x[:, 0]
    family = np.linalg.norm(x - x[0], axis=1) < 0.5  # 20 structures the network gets wrong
    truth = base + 0.5 * family + 0.02 * rng.normal(size=200)
    labelled = np.flatnonzero(family)[::2]
    unlabelled_family = np.setdiff1d(np.flatnonzero(family), labelled)
    far = np.flatnonzero(~family)

    def errors(gp: ResidualGP) -> tuple[float, float]:
        mean, _ = gp.fit(x[labelled], truth[labelled] - base[labelled]).predict(x)
        error = np.abs(base + mean - truth)
        return error[unlabelled_family].mean(), error[far].mean()

    before = np.abs(base - truth)
    family_error, far_error = errors(ResidualGP())
    assert family_error < 0.3 * before[unlabelled_family].mean()
    assert far_error < 0.1 and before[far].mean() < 0.02
    # without the bound on the length scale the family's offset moves the whole pool
    assert errors(ResidualGP(max_length=20.0))[1] > 0.4


@pytest.mark.slow
def test_the_simulation_takes_the_vacuum_geometry_as_gp_input(tiny_ensemble):
    from anisoscreen.campaign.simulate import SimulationConfig, simulate

    oracle = load_oracle(ORACLE)
    reports = [
        simulate(
            oracle,
            SimulationConfig(
                strategy="greedy",
                rounds=2,
                batch_size=5,
                model=str(tiny_ensemble),
                learner="gp",
                gp_geometry=geometry,
            ),
            get_settings().shared,
        )
        for geometry in (False, True)
    ]
    assert reports[1]["config"]["gp_geometry"] is True
    # round 0 has no labels: the same picks; after it the GP sees other coordinates
    assert reports[0]["rounds"][0]["picked"] == reports[1]["rounds"][0]["picked"]
    assert reports[0]["rounds"][1]["mae_unlabelled"] != reports[1]["rounds"][1]["mae_unlabelled"]


@pytest.mark.slow
def test_embeddings_come_from_the_same_pass_as_the_tensors(tiny_ensemble, triclinic):
    from anisoscreen.model.inference import Predictor
    from anisoscreen.model.training.evaluate import predict_with_embeddings

    predictor = Predictor.load(str(tiny_ensemble), device="cpu")
    structures = [e.structure for e in load_oracle(ORACLE)[:6]] + [triclinic]
    graphs = [predictor.graph_or_error(s) for s in structures]
    graphs = [g for g in graphs if not isinstance(g, str)]
    tensors, embeddings = predictor.predict_graphs_with_embeddings(graphs)
    np.testing.assert_array_equal(tensors, predictor.predict_graphs(graphs))
    irreps, expected = predict_with_embeddings(predictor.model.networks, graphs)
    assert embeddings.shape == expected.shape == (3, len(graphs), expected.shape[2])
    np.testing.assert_allclose(embeddings, expected, rtol=1e-5, atol=1e-6)


def test_a_nearly_constant_extra_column_does_not_swamp_the_coordinates():
    from anisoscreen.campaign.learner import GEOMETRY_SCALE

    rng = np.random.default_rng(1)
    embedding, base = rng.normal(size=(200, 8)), rng.normal(size=200)
    geometry = np.zeros((200, 2))
    geometry[:3] = [0.1, 0.5]  # three slightly padded cells among dense crystals
    floored = np.linalg.norm(pool_coordinates(embedding, base, geometry), axis=1)
    raw = np.linalg.norm(pool_coordinates(embedding, base, geometry, None), axis=1)
    # standardised by the pool's own spread the three stand ~8 sigma out, beyond every other
    assert raw[:3].min() > 2 * raw[3:].max()
    # with the least scale they are half a scale unit off: among the others
    assert floored[:3].max() < np.median(floored[3:])
    assert GEOMETRY_SCALE == (0.2, 0.4)
    # without extra columns the floor changes nothing
    np.testing.assert_array_equal(
        pool_coordinates(embedding, base), pool_coordinates(embedding, base, extra_scale=None)
    )


def test_the_fit_finds_the_best_length_anywhere_within_its_bounds():
    """Starts spread over the length's bounds: a short-range residual is not missed."""
    from anisoscreen.campaign.residual import ResidualGP

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 2))
    x /= np.sqrt((x**2).sum(axis=1).mean())
    y = np.sin(12 * x[:, 0]) * 0.3 + 0.01 * rng.normal(size=40)  # varies over ~0.1
    gp = ResidualGP(max_length=0.3).fit(x, y)
    fitted = gp._nll(np.log([gp.length_, gp.amplitude_, gp.noise_]), x, y)
    spread = np.sqrt(np.mean(y**2))
    grid = [
        gp._nll(np.log([length, amplitude, noise]), x, y)
        for length in np.geomspace(0.2, 0.3, 8)
        for amplitude in np.geomspace(0.02, 2 * spread, 12)
        for noise in np.geomspace(0.02, 2 * spread, 12)
    ]
    assert fitted <= min(grid) + 1e-6

"""Acquisition strategies on synthetic ensemble values: each strategy's defining property."""

from __future__ import annotations

import numpy as np
import pytest

from anisoscreen.campaign.acquisition import (
    DiversityGuard,
    Exploration,
    Greedy,
    RandomChoice,
    Thompson,
    UpperConfidenceBound,
    group_labels,
    make_strategy,
)
from anisoscreen.errors import AnisoscreenError


def _ensemble(means, spreads, members=5):
    """Member values with exactly the given mean and sample standard deviation."""
    unit = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])[:members]
    unit = unit / unit.std(ddof=1)
    return np.asarray(means)[None, :] + unit[:, None] * np.asarray(spreads)[None, :]


MEANS = [5.0, 4.0, 3.0, 2.0, 1.0]
SPREADS = [0.0, 0.1, 2.0, 0.5, 3.0]
ALL = np.ones(5, dtype=bool)


def test_synthetic_ensemble_has_the_requested_moments():
    values = _ensemble(MEANS, SPREADS)
    np.testing.assert_allclose(values.mean(axis=0), MEANS)
    np.testing.assert_allclose(values.std(axis=0, ddof=1), SPREADS)


def test_greedy_ranks_by_mean():
    picks = Greedy().select(_ensemble(MEANS, SPREADS), ALL, 3, np.random.default_rng(0))
    assert picks == [0, 1, 2]


def test_ucb_ranks_by_mean_plus_kappa_sigma():
    values = _ensemble(MEANS, SPREADS)
    # scores with kappa 1.5: 5, 4.15, 6, 2.75, 5.5
    assert UpperConfidenceBound(kappa=1.5).select(values, ALL, 5, np.random.default_rng(0)) == [
        2,
        4,
        0,
        1,
        3,
    ]
    # kappa = 0 is greedy
    assert UpperConfidenceBound(kappa=0.0).select(values, ALL, 3, np.random.default_rng(0)) == [
        0,
        1,
        2,
    ]


def test_exploration_ranks_by_spread_and_needs_an_ensemble():
    values = _ensemble(MEANS, SPREADS)
    assert Exploration().select(values, ALL, 2, np.random.default_rng(0)) == [4, 2]
    with pytest.raises(AnisoscreenError):
        Exploration().select(values[:1], ALL, 2, np.random.default_rng(0))


def test_unavailable_candidates_are_never_picked():
    values = _ensemble(MEANS, SPREADS)
    available = np.array([False, True, False, True, True])
    for name in ("greedy", "ucb", "exploration", "random", "thompson"):
        picks = make_strategy(name).select(values, available, 5, np.random.default_rng(1))
        assert sorted(picks) == [1, 3, 4], name


def test_random_is_uniform_and_ignores_the_model():
    rng = np.random.default_rng(0)
    values = _ensemble(np.arange(20.0), np.zeros(20))
    counts = np.zeros(20)
    for _ in range(2000):
        counts[RandomChoice().select(values, np.ones(20, bool), 2, rng)] += 1
    # every candidate is picked about 2000 * 2 / 20 = 200 times, the best no more often
    assert counts.min() > 150 and counts.max() < 250
    assert not RandomChoice.uses_model and Greedy.uses_model


def test_thompson_follows_the_sampled_member():
    # member 0 ranks candidate 0 first, member 1 candidate 1: picks follow the member drawn
    values = np.array([[3.0, 1.0, 0.0], [1.0, 3.0, 0.0]])
    firsts = [
        Thompson().select(values, np.ones(3, bool), 1, np.random.default_rng(s))[0]
        for s in range(200)
    ]
    assert set(firsts) == {0, 1}
    assert 60 < firsts.count(0) < 140
    # with one member it is greedy on that member
    assert Thompson().select(values[:1], np.ones(3, bool), 3, np.random.default_rng(0)) == [
        0,
        1,
        2,
    ]


def test_thompson_explores_more_than_greedy_on_uncertain_candidates():
    rng = np.random.default_rng(0)
    # candidate 0: sure 2.0; candidate 1: mean 1.9 but members disagree strongly
    values = np.array([[2.0, 4.0], [2.0, -0.2], [2.0, 3.9], [2.0, 0.0], [2.0, 1.8]])
    firsts = [Thompson().select(values, np.ones(2, bool), 1, rng)[0] for _ in range(500)]
    assert Greedy().select(values, np.ones(2, bool), 1, rng) == [0]
    assert 0.3 < firsts.count(1) / 500 < 0.5  # two members of five prefer candidate 1


def test_diversity_guard_caps_picks_per_group():
    values = _ensemble([9.0, 8.0, 7.0, 6.0, 1.0], np.zeros(5))
    guard = DiversityGuard(["MoS2", "MoS2", "MoS2", "BN", "GaN"], max_per_group=2)
    for strategy in (Greedy(), UpperConfidenceBound(), Thompson()):
        picks = strategy.select(values, ALL, 4, np.random.default_rng(0), guard)
        assert picks == [0, 1, 3, 4], strategy.name
    # without the guard the third MoS2 comes before BN
    assert Greedy().select(values, ALL, 4, np.random.default_rng(0)) == [0, 1, 2, 3]
    # a guard too strict to fill the batch returns fewer picks
    strict = DiversityGuard(["A"] * 5, max_per_group=1)
    assert Greedy().select(values, ALL, 3, np.random.default_rng(0), strict) == [0]


def test_group_labels_by_composition_and_prototype():
    from pymatgen.core import Lattice, Structure

    def rocksalt(a, b, lattice):
        return Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(lattice), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )

    nacl, kcl, nacl_big = (
        rocksalt("Na", "Cl", 5.6),
        rocksalt("K", "Cl", 6.3),
        rocksalt("Na", "Cl", 6.0),
    )
    assert group_labels([nacl, kcl, nacl_big], "composition") == ["NaCl", "KCl", "NaCl"]
    prototypes = group_labels([nacl, kcl], "prototype")
    assert prototypes[0] == prototypes[1] == "AB-225"
    assert group_labels([nacl], "none") is None
    with pytest.raises(AnisoscreenError):
        group_labels([nacl], "colour")


def test_unknown_strategy_is_a_user_error():
    with pytest.raises(AnisoscreenError, match="unknown strategy"):
        make_strategy("oracle")

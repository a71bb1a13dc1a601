"""The private third-party APIs behind ``anisoscreen.third_party`` still do what it relies on."""

from __future__ import annotations

import pytest
import torch

from anisoscreen import third_party


def test_installed_versions_are_the_verified_ones():
    # a new version may have moved a private name: re-verify the adapters, then update VERIFIED
    assert third_party.installed_versions() == third_party.VERIFIED
    assert third_party.VERIFIED == {"pymatgen": "2026.10.24", "sevenn": "0.13.0", "torch": "2.13.0"}


def test_crystalnn_semicircle_integral():
    # bins of normalised solid angles, descending to 0: the weights of all bins sum to one
    bins = [1.0, 0.6, 0.3, 0.0]
    weights = [third_party.crystalnn_semicircle_integral(bins, i) for i in range(3)]
    assert all(w > 0 for w in weights)
    assert sum(weights) == pytest.approx(1.0)
    # the values pymatgen 2026.10.24 gives (the area under a semicircle between the bins)
    assert weights == pytest.approx([0.2847569799, 0.3390806849, 0.3761623352])


def test_sevenn_keys_names_the_fields_the_featurizer_reads():
    keys = third_party.sevenn_keys()
    for name in ("NODE_FEATURE", "ATOMIC_NUMBERS", "EDGE_IDX", "EDGE_VEC", "BATCH", "NUM_ATOMS"):
        assert isinstance(getattr(keys, name), str), name


def test_module_children_keeps_every_slot_in_order():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    model.register_module("empty", None)
    assert [name for name, _ in third_party.module_children(model)] == ["0", "1", "empty"]
    assert [name for name, _ in model.named_children()] == ["0", "1"]  # the public API skips

"""Error slices, ensemble calibration, model comparison and the volume-aware training path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from anisoscreen import tensor as tm
from anisoscreen.geometry import largest_empty_slab
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.nn.network import ModelConfig
from anisoscreen.model.training.comparison import (
    ModelVariant,
    compare_models,
    mos2_layer,
    summary_rows,
)
from anisoscreen.model.training.error_slices import calibration, error_block, error_slices
from anisoscreen.model.training.pipeline import train_model
from anisoscreen.model.training.train import TrainConfig


def test_empty_slab_sees_the_vacuum_between_layers():
    width, plane = largest_empty_slab(mos2_layer(20.0))
    assert plane == (0, 0, 1) and width == pytest.approx(20.0 - 2 * 1.565)
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                         [[0, 0, 0], [0.5, 0.5, 0.5]])  # fmt: skip
    # rock salt's widest empty slab lies between its mixed (100) planes, a / 2 apart
    assert largest_empty_slab(rocksalt)[0] == pytest.approx(5.64 / 2)


def test_error_block_counts_six_unique_components():
    reference = np.stack([np.diag([2.0, 3.0, 4.0])] * 2)
    predicted = reference.copy()
    predicted[:, 0, 1] = predicted[:, 1, 0] = 0.6  # one off-diagonal pair wrong by 0.6
    block = error_block(predicted, reference)
    assert block["tensor_mae"] == pytest.approx(0.6 / 6)
    assert block["component_mae"] == pytest.approx(1.2 / 9)


def test_calibration_of_a_gaussian_ensemble():
    rng = np.random.default_rng(0)
    n, k = 4000, 8
    truth = np.stack([np.diag(d) for d in rng.uniform(2, 6, size=(n, 3))])
    sigma = rng.uniform(0.02, 0.3, size=n)
    # members scatter around the truth by sigma: the spread predicts the error
    noise = rng.normal(size=(k, n))[..., None, None] * sigma[None, :, None, None]
    members = truth[None] + noise * np.eye(3)
    result = calibration(members, truth)
    assert result["eps_poly"]["spearman_spread_vs_error"] > 0.3
    # the mean of k members errs by sigma/sqrt(k): far inside +-2 sigma
    assert result["eps_poly"]["coverage_2sigma"] > 0.99
    assert calibration(members[:1], truth) is None


def test_slices_pick_layers_tail_and_dimensionality():
    layer, dense = mos2_layer(20.0), mos2_layer(6.2)
    reference = np.stack([np.diag([10.0, 10.0, 1.5]), np.diag([3.0, 3.0, 3.0])])
    members = np.stack([reference + 0.1, reference - 0.1, reference + 0.3])
    slices = error_slices(members, reference, [layer, dense], [2, 3])
    assert slices["layered_gap"]["n"] == 1 and slices["eps_poly_tail"]["n"] == 0
    assert set(slices["by_dimensionality"]) == {"2D", "3D"}
    assert slices["by_dimensionality"]["2D"]["eps_poly_mae"] == pytest.approx(0.1)


@pytest.mark.slow
def test_volume_aware_training_and_comparison(shared_dir, tmp_path):
    data = shared_dir / "data" / "mp_dielectric_tensors.json.gz"
    config = ModelConfig(mul=4, lmax=2, radial_hidden=16, embed_dim=8, readout="psd_sum_volume")
    result = train_model(
        data,
        tmp_path / "psd",
        "tiny-psd",
        config,
        TrainConfig(max_epochs=1, batch_size=16, loss="mse_log_eig"),
        seeds=(0, 1),
        max_entries=100,
        device="cpu",
    )
    assert result["finished"] and 0 < result["test"]["eps_poly_mae"] < 10
    loaded = load_model(tmp_path / "psd" / "model.pt")
    assert loaded.config.readout == "psd_sum_volume" and 5 < loaded.config.volume_per_atom < 40
    card = (tmp_path / "psd" / "MODEL_CARD.md").read_text()
    assert "divides a sum of per-atom polarisabilities by the cell volume" in card

    comparison = compare_models(
        [ModelVariant("both", tmp_path / "psd" / "model.pt"),
         ModelVariant("first", tmp_path / "psd" / "model.pt", members=[0])],
        data,
    )  # fmt: skip
    both, first = comparison["both"], comparison["first"]
    assert both["ensemble"]["validation"]["n"] == 270 and both["ensemble"]["test"]["n"] == 269
    assert len(both["members"]) == 2 and len(first["members"]) == 1
    assert first["members"][0] == both["members"][0]
    assert first["slices"]["calibration"] is None and both["slices"]["calibration"] is not None
    dilution = both["dilution"]
    # the volume-aware read-out dilutes exactly: (eps - 1) halves from 20 to 40 A
    assert dilution["in_plane_ratio_40_20"] == pytest.approx(0.5, abs=1e-4)
    rows = summary_rows(comparison)
    assert [r["label"] for r in rows] == ["both", "first"]
    json.dumps(comparison)  # the study is stored as JSON
    assert tm.eigenvalues(np.diag(dilution["eps_out_of_plane"])).min() > 1.0

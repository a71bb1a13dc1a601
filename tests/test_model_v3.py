"""Model v3's pieces: the band gap as an input, spread calibration, the post-hoc baseline, and a
tiny training run with exfoliation augmentation and the laminate read-out."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from anisoscreen.geometry import depolarisation_tensor, laminate_mix
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.inference import Predictor
from anisoscreen.model.nn.graph import collate, structure_to_graph
from anisoscreen.model.nn.network import AnisoNet, ModelConfig, gap_features
from anisoscreen.model.spread_calibration import (
    SpreadCalibration,
    conformal_factor,
    fit_spread_calibration,
)
from anisoscreen.model.training.comparison import mos2_layer
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.model.training.error_slices import (
    by_band_gap,
    calibration,
)
from anisoscreen.model.training.evaluate import apply_posthoc_laminate
from anisoscreen.model.training.pipeline import train_model
from anisoscreen.model.training.train import TrainConfig
from anisoscreen.structures_io import StructureRecord

sys.path.insert(0, str(Path(__file__).parent))

import crystals  # noqa: E402


def rocksalt() -> Structure:
    return crystals.nacl()


def gap_network() -> AnisoNet:
    torch.manual_seed(0)
    config = crystals.laminate_config(gap_input=True)
    return AnisoNet(config).double().eval()


def test_gap_features_are_zero_for_an_unknown_gap_and_change_with_the_gap():
    features = gap_features(torch.tensor([math.nan, 0.6, 3.0], dtype=torch.float64))
    assert torch.all(features[0] == 0)
    assert features[1, -2] == 1.0 and features[2, -2] == 1.0  # the "known" flag
    assert features[1, -1] == pytest.approx(1 / 1.6)
    assert not torch.allclose(features[1], features[2])


def test_the_gap_changes_the_prediction_and_a_missing_one_is_the_gap_free_mode():
    net = gap_network()
    structure = rocksalt()
    graphs = [structure_to_graph(structure, band_gap=gap) for gap in (0.6, 4.0, None, float("nan"))]
    with torch.no_grad():
        eps = net.predict_tensor(collate(graphs, torch.float64)).numpy()
    assert not np.allclose(eps[0], eps[1])
    np.testing.assert_array_equal(eps[2], eps[3])  # None and nan are the same: unknown
    # rotation-invariant input: a cubic crystal stays isotropic whatever the gap
    for tensor in eps:
        np.testing.assert_allclose(tensor, np.eye(3) * tensor[0, 0], atol=1e-10)


def test_the_gap_read_out_scales_every_polarisability_by_exp_of_its_shift():
    torch.manual_seed(0)
    net = AnisoNet(crystals.laminate_config(gap_input=True, gap_readout=True)).double().eval()
    graphs = [structure_to_graph(crystals.nacl(), band_gap=gap) for gap in (0.6, 0.6, None)]
    with torch.no_grad():
        before = net.predict_tensor(collate(graphs, torch.float64)).numpy()
        assert net.gap_log_scale is not None
        net.gap_log_scale.weight.fill_(0.1)  # s = 0.1 * sum of the gap features
        after = net.predict_tensor(collate(graphs, torch.float64)).numpy()
    shift = 0.1 * float(gap_features(torch.tensor([0.6], dtype=torch.float64)).sum())
    # eps - 1 = (v0 / V) sum exp(M_i + s I) = e^s (eps_before - 1), for a known gap only
    np.testing.assert_allclose(after[0] - np.eye(3), math.exp(shift) * (before[0] - np.eye(3)))
    np.testing.assert_array_equal(after[2], before[2])
    with pytest.raises(ValueError, match="gap_readout needs gap_input"):
        AnisoNet(crystals.laminate_config(gap_readout=True))


def _overconfident_members(rng, n: int, k: int, truth: np.ndarray, confidence: float):
    """Members whose spread is ``confidence`` times too small for their mean's error."""
    sigma = rng.uniform(0.05, 0.3, size=n)
    bias = rng.normal(size=n)[:, None, None] * sigma[:, None, None] * np.eye(3)
    noise = rng.normal(size=(k, n))[..., None, None] * sigma[None, :, None, None] / confidence
    return truth[None] + bias[None] + noise * np.eye(3)


def test_fitted_spread_calibration_covers_95_percent_per_regime_on_fresh_data():
    rng = np.random.default_rng(1)
    n, k = 4000, 8
    truth = np.stack([np.diag(d) for d in rng.uniform(2, 6, size=(n, 3))])
    vacuum = np.arange(n) % 4 == 0
    # dense structures 3x overconfident, those with vacuum 6x
    members = np.where(
        vacuum[None, :, None, None],
        _overconfident_members(rng, n, k, truth, 6.0),
        _overconfident_members(rng, n, k, truth, 3.0),
    )
    fit, fresh = slice(0, n // 2), slice(n // 2, n)
    scales = fit_spread_calibration(members[:, fit], truth[fit], vacuum[fit], np.arange(n)[fit])
    assert scales["eps_poly"]["vacuum"] > 1.5 * scales["eps_poly"]["dense"] > 2.0
    result = calibration(members[:, fresh], truth[fresh], scales, vacuum[fresh])
    assert result is not None
    assert result["eps_poly"]["coverage_2sigma"] < 0.7
    assert result["eps_poly"]["coverage_2sigma_calibrated"] == pytest.approx(0.95, abs=0.02)
    # one factor for all would leave the vacuum regime short
    one = {q: {"scale": v["dense"]} for q, v in scales.items()}
    short = calibration(members[:, fresh][:, vacuum[fresh]], truth[fresh][vacuum[fresh]], one)
    assert short is not None and short["eps_poly"]["coverage_2sigma_calibrated"] < 0.85


def test_copies_of_one_entry_count_once_in_the_conformal_factor():
    sigma = np.ones(12)
    # entry 0 has ten copies with small errors, and one large-error copy; entry 1 one small
    error = np.array([0.2] * 10 + [8.0, 0.2])
    groups = np.array([0] * 11 + [1])
    assert conformal_factor(sigma, error, groups, 0.5) == pytest.approx(4.0)
    assert conformal_factor(sigma, error, np.arange(12), 0.5) == pytest.approx(0.1)


def test_the_released_single_factor_reads_as_one_factor_for_both_regimes():
    old = SpreadCalibration.from_dict({"scale": 3.69, "n": 365})
    assert (old.dense, old.vacuum, old.by_regime) == (3.69, 3.69, False)
    np.testing.assert_allclose(
        old.apply(np.array([1.0, 2.0]), np.array([True, False])), [3.69, 7.38]
    )
    new = SpreadCalibration.from_dict(SpreadCalibration(1.5, 4.0).as_dict())
    assert new.by_regime and new.apply(np.array([1.0]), True)[0] == 4.0


def test_predictions_take_the_factor_of_their_regime(tmp_path):
    from anisoscreen.model.checkpoint import save_model
    from anisoscreen.schemas import PredictionDoc

    config = ModelConfig(
        mul=4,
        lmax=2,
        readout="psd_laminate_volume",
        volume_per_atom=15.0,
        target_shift=0.5,
        target_scale=0.4,
    )
    states = []
    for seed in range(3):
        torch.manual_seed(seed)
        states.append(AnisoNet(config).state_dict())
    factors = {"dense": 2.0, "vacuum": 5.0, "n_dense": 1, "n_vacuum_entries": 1}
    calibration = {"eps_poly": factors, "anisotropy_ratio": factors}
    path = save_model(
        tmp_path / "m.pt", config, states, "m", "0", {"spread_calibration": calibration}
    )
    predictor = Predictor(load_model(path), device="cpu")
    structures = {"dense": rocksalt(), "vacuum": mos2_layer(30.0)}
    records = [StructureRecord(name, s, "test") for name, s in structures.items()]
    for doc in predictor.predict(records):
        assert isinstance(doc, PredictionDoc)
        graph = predictor.graph_or_error(structures[doc.material_id])
        assert not isinstance(graph, str)
        assert graph.has_vacuum is (doc.material_id == "vacuum")
        members = predictor.predict_graphs([graph])[:, 0]
        raw = float(np.linalg.eigvalsh(members).mean(axis=1).std(ddof=1))
        assert doc.eps_poly_std == pytest.approx(raw * factors[doc.material_id], rel=1e-6)


def test_errors_by_band_gap_bin():
    reference = np.stack([np.eye(3) * 3.0] * 4)
    predicted = reference + np.stack([np.eye(3) * d for d in (1.0, 0.2, 0.0, 0.5)])
    bins = by_band_gap(predicted, reference, [0.7, 1.5, 3.0, None])
    assert bins["gap 0.5-1 eV"]["eps_poly_mae"] == pytest.approx(1.0)
    assert bins["gap 1-2 eV"]["eps_poly_mae"] == pytest.approx(0.2)
    assert bins["gap > 2 eV"]["n"] == 1 and bins["gap unknown"]["n"] == 1
    assert bins["gap < 0.5 eV"] == {"n": 0}


def test_posthoc_laminate_keeps_dense_crystals_and_series_mixes_a_padded_layer():
    eps = np.diag([5.0, 5.0, 4.0])
    members = np.stack([np.stack([eps, eps])])  # one member, two structures
    corrected = apply_posthoc_laminate(members, [rocksalt(), mos2_layer(20.0)])
    np.testing.assert_allclose(corrected[0, 0], eps)
    expected = laminate_mix(eps - np.eye(3), depolarisation_tensor(mos2_layer(20.0)))
    np.testing.assert_allclose(corrected[0, 1], expected)
    assert corrected[0, 1][0, 0] == pytest.approx(5.0)  # in the plane: unchanged
    assert corrected[0, 1][2, 2] < 4.0  # along the normal: series, lower


@pytest.mark.slow
def test_v3_style_training_records_calibration_exfoliation_and_gap_use(shared_dir, tmp_path):
    """Two members, two epochs, on the first 300 entries: the v3 recipe end to end."""
    folder = tmp_path / "v3-tiny"
    result = train_model(
        shared_dir / "data" / "mp_dielectric_tensors.json.gz",
        folder,
        "v3-tiny",
        ModelConfig(mul=4, lmax=1, readout="psd_laminate_volume", gap_input=True),
        TrainConfig(
            max_epochs=2,
            batch_size=16,
            loss="mse_log_eig",
            gap_dropout=0.25,
            exfoliation_deltas=(4.0, 12.0),
        ),
        seeds=(0, 1),
        max_entries=300,
        device="cpu",
    )
    assert result["finished"] and result["test_exfoliated"]["n"] > 0
    loaded = load_model(folder / "model.pt")
    metadata = loaded.metadata
    assert set(metadata["spread_calibration"]) == {"eps_poly", "anisotropy_ratio"}
    assert metadata["exfoliation"]["layered_entries"]["train"] > 0
    assert "psd_laminate_volume" in (folder / "MODEL_CARD.md").read_text()

    predictor = Predictor(loaded, device="cpu")
    entries, _ = clean_entries(load_entries(shared_dir / "data" / "mp_dielectric_tensors.json.gz"))
    known = entries[int(random_split(300, 42)["train"][0])].structure  # elements seen in training
    records = [
        StructureRecord("with-gap", known, "test", fields={"band_gap": 5.0}),
        StructureRecord("no-gap", known, "test"),
    ]
    with_gap, without = list(predictor.predict(records))
    assert with_gap.band_gap_used is True and without.band_gap_used is False
    assert with_gap.eps_poly != pytest.approx(without.eps_poly, abs=1e-9)
    calibration = metadata["spread_calibration"]["eps_poly"]
    assert calibration["n_vacuum_entries"] > 0  # the exfoliated validation entries
    graph = predictor.graph_or_error(known, 5.0)
    assert not isinstance(graph, str)
    members = predictor.predict_graphs([graph])[:, 0]
    raw = float(np.linalg.eigvalsh(members).mean(axis=1).std(ddof=1))
    vacuum = graph.has_vacuum
    scale = calibration["vacuum" if vacuum else "dense"]
    assert with_gap.eps_poly_std == pytest.approx(raw * scale)


def test_the_card_compares_with_the_release_it_replaces(tmp_path):
    """The v3 study with ``--previous``: the card's tables gain the replaced release's column."""
    from anisoscreen.model.training.model_card import write_model_card

    root = Path(__file__).parent.parent
    study = json.loads((root / "studies" / "results" / "v3.json").read_text())
    previous = study["v3"]
    study = {**study, "previous": previous, "previous_model": "anisonet-mp-v3 3.1.0"}
    metadata = json.loads((root / "models" / "anisonet-mp-v3" / "metrics.json").read_text())
    config = crystals.laminate_config()
    write_model_card(tmp_path / "card.md", "v3", "9.9.9", config, {**metadata, "v3_study": study})
    card = (tmp_path / "card.md").read_text()
    assert "anisonet-mp-v3 3.1.0: eps_poly / a_r MAE" in card
    test = previous["test"]["metrics"]
    pair = f"{test['eps_poly_mae']:.3f} / {test['anisotropy_ratio_mae']:.3f}"
    assert "| test split | " in card and card.count(pair) >= 2  # previous and v3 columns

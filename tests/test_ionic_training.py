"""Ionic and total targets: data, cleaning, smoke training through the CLI, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from anisoscreen.cli import app
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.training.dataset import (
    clean_entries,
    load_entries,
    random_split,
    target_cleaning,
)
from anisoscreen.model.training.error_slices import tensor_errors, tensor_mae
from anisoscreen.model.training.evaluate import ARRAY_KEYS, evaluate_model, metrics, summary


@pytest.fixture(scope="module")
def cleaned(shared_dir):
    entries, _ = clean_entries(load_entries(shared_dir / "data" / "mp_dielectric_tensors.json.gz"))
    return entries


@pytest.fixture(scope="module")
def ionic_model(shared_dir, tmp_path_factory):
    """``anisoscreen train --target ionic`` on 100 entries for 2 epochs (the CI smoke run)."""
    folder = tmp_path_factory.mktemp("ionic-models")
    args = ["train", "--target", "ionic", "--name", "tiny-ionic", "--output-dir", str(folder)]
    args += ["--mul", "4", "--lmax", "1", "--max-entries", "100", "--max-epochs", "2"]
    args += ["--batch-size", "16", "--device", "cpu", "--seed", "0"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    return folder / "tiny-ionic", out.output


def test_entries_carry_all_three_tensors_and_total_is_their_sum(cleaned):
    assert len(cleaned) == 2695
    assert all(e.eps_ionic is not None and e.eps_total is not None for e in cleaned)
    worst = max(
        np.abs(e.tensor("total") - e.tensor("electronic") - e.tensor("ionic")).max()
        for e in cleaned
    )
    assert worst < 1e-12
    assert sum(e.born is not None for e in cleaned) == 1996
    with_born = next(e for e in cleaned if e.born is not None)
    assert with_born.born.shape == (len(with_born.structure), 3, 3)


def test_target_cleaning_drops_only_the_heavy_tail_and_keeps_the_test_split(cleaned):
    keep, removed = target_cleaning(cleaned, "ionic")
    assert removed == {"no_ionic": 0, "ionic_not_psd": 0, "ionic_eps_poly_above_100": 8}
    assert keep.sum() == 2687
    assert all(
        np.trace(e.tensor("ionic")) / 3 > 100 for e, k in zip(cleaned, keep, strict=True) if not k
    )
    assert target_cleaning(cleaned, "electronic")[1] == {}
    # the rule is applied to train + validation only: seed-42 split removes 6 there
    split = random_split(len(cleaned), 42)
    trainable = [cleaned[i] for i in np.concatenate([split["train"], split["validation"]])]
    assert target_cleaning(trainable, "ionic")[1]["ionic_eps_poly_above_100"] == 6


def test_tensor_mae_is_the_mean_over_six_unique_components():
    reference = np.zeros((1, 3, 3))
    predicted = np.array([[[1.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]])
    assert tensor_mae(predicted, reference) == pytest.approx((1 + 2 + 3) / 6)
    pair = np.concatenate([predicted, reference])  # per cell: then 0 for the exact one
    np.testing.assert_allclose(tensor_errors(pair, np.zeros((2, 3, 3))), [1.0, 0.0])
    assert metrics(predicted, reference)["component_mae"] == pytest.approx((1 + 4 + 3) / 9)


def test_eps0_has_no_anisotropy_ratio_error():
    # a reference eps0 with a zero eigenvalue: lambda_max / lambda_min is undefined
    reference = np.array([np.diag([4.0, 2.0, 0.0]), np.diag([3.0, 3.0, 3.0])])
    predicted = np.array([np.diag([4.0, 2.0, 0.1]), np.diag([3.0, 3.0, 2.0])])
    systems = ["orthorhombic", "cubic"]
    ionic = metrics(predicted, reference, systems, target="ionic")
    assert ionic["anisotropy_ratio_mae"] is None
    assert all(m["anisotropy_ratio_mae"] is None for m in ionic["per_crystal_system"].values())
    assert ionic["eps_poly_mae"] == pytest.approx((0.1 / 3 + 1 / 3) / 2)
    total = metrics(predicted + np.eye(3), reference + np.eye(3), systems, target="total")
    assert total["anisotropy_ratio_mae"] == pytest.approx((abs(5 / 1.1 - 5) + abs(4 / 3 - 1)) / 2)


def test_cli_trains_an_ionic_model_that_records_its_target(ionic_model):
    folder, output = ionic_model
    loaded = load_model(folder / "model.pt")
    assert loaded.config.target == "ionic" and loaded.config.readout == "psd_square_volume"
    info = json.loads((folder / "metrics.json").read_text())
    assert info["target"] == "ionic" and info["train_config"]["loss"] == "huber_log1p_eig"
    test = info["metrics"]["test"]
    assert test["n"] == 10 and 0 < test["tensor_mae"] < 100
    assert test["anisotropy_ratio_mae"] is None
    card = (folder / "MODEL_CARD.md").read_text()
    assert "MAE_ten" in output and "ionic" in card
    assert "- a_r MAE: not defined for eps0 alone" in card


def test_evaluate_compares_with_the_ionic_reference_and_draws_log_parity(ionic_model, tmp_path):
    folder, _ = ionic_model
    result = evaluate_model(str(folder), evaluate_data(), device="cpu")
    assert result["target"] == "ionic"
    entries, _ = clean_entries(load_entries(evaluate_data()))
    test_entries = [entries[:100][i] for i in random_split(100, 42)["test"]]
    expected = np.stack([e.tensor("ionic") for e in test_entries])
    np.testing.assert_allclose(result["reference"], expected)
    assert np.linalg.eigvalsh(result["predicted"]).min() >= -1e-6  # PSD by construction
    members = result["member_predicted"]  # each member's tensors, from the same pass
    assert members.shape == (len(result["members"]), *result["predicted"].shape)
    np.testing.assert_allclose(members.mean(axis=0), result["predicted"], rtol=1e-6)
    assert not set(ARRAY_KEYS) & set(summary(result)) and json.dumps(summary(result))
    plot = tmp_path / "parity.png"
    out = CliRunner().invoke(
        app, ["evaluate", "--model", str(folder), "--device", "cpu", "--parity-plot", str(plot)]
    )
    assert out.exit_code == 0, out.output
    assert "MAE_ten" in out.output and "(ionic)" in out.output
    assert result["metrics"]["anisotropy_ratio_mae"] is None  # eps0 alone has no a_r
    assert plot.stat().st_size > 10_000


def evaluate_data():
    from conftest import SHARED

    return SHARED / "data" / "mp_dielectric_tensors.json.gz"


def test_model_set_evaluation_sums_the_two_models_against_dfpt_total(
    tiny_model, ionic_model, tmp_path, monkeypatch
):
    from anisoscreen.model.training import dataset
    from anisoscreen.model.training.evaluate import evaluate_model_set

    electronic_folder, _ = tiny_model
    ionic_folder, _ = ionic_model
    reads: list[str] = []
    read = dataset.load_entries

    def counting(path, *args, **kwargs):
        reads.append(str(path))
        return read(path, *args, **kwargs)

    monkeypatch.setattr(dataset, "load_entries", counting)
    results = evaluate_model_set(
        str(electronic_folder), str(ionic_folder), evaluate_data(), device="cpu"
    )
    assert reads == [str(evaluate_data())]  # the data set is read once for both models
    total = results["total"]
    np.testing.assert_array_equal(
        total["predicted"], results["electronic"]["predicted"] + results["ionic"]["predicted"]
    )
    np.testing.assert_allclose(
        total["reference"],
        results["electronic"]["reference"] + results["ionic"]["reference"],
        atol=1e-12,
    )
    assert total["metrics"]["n"] == 10 and total["metrics"]["tensor_mae"] > 0
    assert set(total["metrics"]["per_crystal_system"]) <= {
        "cubic", "hexagonal", "monoclinic", "orthorhombic", "tetragonal", "triclinic", "trigonal"
    }  # fmt: skip
    plot = tmp_path / "set.png"
    out = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(electronic_folder), "--ionic-model", str(ionic_folder),
         "--device", "cpu", "--parity-plot", str(plot)],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "(total)" in out.output and "(ionic)" in out.output and "(electronic)" in out.output
    counted = [line for line in out.output.splitlines() if line.startswith("evaluating: ")]
    assert counted and "(100 %)" in counted[-1]  # both models' structures in one count
    assert all((tmp_path / f"set-{k}.png").stat().st_size > 10_000 for k in results)


def test_refined_evaluation_scores_the_refine_stage_on_the_split(
    tiny_model, ionic_model, cleaned, tmp_path, monkeypatch
):
    """evaluate --refine-charges: each small structure's eps0 is the refine stage's row."""
    from anisoscreen.ionic_physics import force_constant_cache
    from anisoscreen.ionic_physics.born import nominal_born_charges
    from anisoscreen.ionic_physics.force_constants import gamma_force_constants
    from anisoscreen.ionic_physics.potentials import HarmonicSpringPotential
    from anisoscreen.ionic_physics.route import physics_ionic
    from anisoscreen.model.training.evaluate import evaluate_model_set
    from anisoscreen.screening.ionic_refine import IonicRefineMaker
    from anisoscreen.screening.refined_evaluation import refine_model_set

    electronic_folder, _ = tiny_model
    ionic_folder, _ = ionic_model
    results = evaluate_model_set(
        str(electronic_folder), str(ionic_folder), evaluate_data(), device="cpu", cleaned=cleaned
    )
    chosen = [cleaned[i] for i in results["total"]["indices"]]
    sizes = sorted(len(e.structure) for e in chosen)
    max_sites = sizes[len(sizes) // 2]  # the larger half keeps the direct value
    refine = IonicRefineMaker(
        potential="harmonic-springs",
        born_source="nominal",
        physics_sources=("nominal",),
        physics_weight=0.8,
        direct_weight=0.1,
        store={"data_dir": str(tmp_path / "d")},
    )
    refined = refine_model_set(results, refine, cleaned, max_sites=max_sites)
    direct, eps_inf = results["ionic"]["predicted"], results["electronic"]["predicted"]
    ionic = refined["ionic_refined"]["predicted"]
    potential = HarmonicSpringPotential(spring=1.0, cutoff=3.2)
    blended = 0
    for row, entry in enumerate(chosen):
        if len(entry.structure) >= max_sites:
            np.testing.assert_array_equal(ionic[row], direct[row])
            continue
        fc = gamma_force_constants(entry.structure, potential)
        physics = physics_ionic(entry.structure, nominal_born_charges(entry.structure), fc)
        if physics.flags:
            np.testing.assert_array_equal(ionic[row], direct[row])
        else:
            blended += 1
            expected = 0.1 * direct[row] + 0.8 * physics.eps_ionic
            np.testing.assert_allclose(ionic[row], expected, rtol=1e-6, atol=1e-9)
    assert blended > 0
    total = refined["total_refined"]
    np.testing.assert_allclose(total["predicted"], eps_inf + ionic)
    np.testing.assert_array_equal(total["reference"], results["total"]["reference"])
    assert total["metrics"]["tensor_mae"] == pytest.approx(
        tensor_mae(eps_inf + ionic, results["total"]["reference"])
    )
    small = sum(len(e.structure) < max_sites for e in chosen)
    assert refined["ionic_refined"]["n_refined"] == small
    assert refined["ionic_refined"]["methods"].get("blend", 0) == blended
    assert sum(refined["ionic_refined"]["methods"].values()) == len(chosen)
    assert refined["ionic_refined"]["ionic_method"] == [
        "direct" if len(e.structure) >= max_sites or np.array_equal(ionic[i], direct[i])
        else "blend"
        for i, e in enumerate(chosen)
    ]  # fmt: skip
    # nominal charges are one set, not members: no row has a physics spread
    assert refined["ionic_refined"]["physics_spread"] == [None] * len(chosen)

    # again: every force constant comes from the store, none is computed
    def fail(*_args, **_kwargs):
        raise AssertionError("force constants computed again")

    monkeypatch.setattr(force_constant_cache, "gamma_force_constants", fail)
    again = refine_model_set(results, refine, cleaned, max_sites=max_sites)
    np.testing.assert_array_equal(again["ionic_refined"]["predicted"], ionic)


def test_evaluate_cli_reports_the_refined_model_set(tiny_model, ionic_model, tmp_path, monkeypatch):
    electronic_folder, _ = tiny_model
    ionic_folder, _ = ionic_model
    monkeypatch.setenv("ANISOSCREEN_DATA_DIR", str(tmp_path / "d"))
    out = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(electronic_folder), "--ionic-model", str(ionic_folder),
         "--device", "cpu", "--refine-charges", "dfpt", "--refine-potential", "harmonic-springs",
         "--json", str(tmp_path / "set.json")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.count("refined (dfpt Born") == 2  # the ionic and the total tables
    summary = json.loads((tmp_path / "set.json").read_text())
    assert set(summary) == {"electronic", "ionic", "total", "ionic_refined", "total_refined"}
    refined = summary["ionic_refined"]
    assert "refined (dfpt Born charges, harmonic-springs force constants" in refined["model"]
    assert refined["n_refined"] > 0 and sum(refined["methods"].values()) == 10
    assert refined["metrics"]["n"] == 10 and refined["subset"] == "test"
    # the DFPT charges with a stand-in potential: the physics value where it is not flagged
    assert refined["methods"].get("physics", 0) + refined["n_flagged"] >= 1
    out = CliRunner().invoke(app, ["evaluate", "--refine-charges", "dfpt"])
    assert out.exit_code != 0 and "need --ionic-model" in str(out.exception)

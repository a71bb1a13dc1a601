"""Smoke training (reduced size), resumable checkpoints, evaluation and `predict`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from anisoscreen.cli import app
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import load_model
from anisoscreen.model.inference import PredictionFailure, predict_structures
from anisoscreen.model.training.dataset import clean_entries, load_entries, random_split
from anisoscreen.model.training.train import (
    TrainConfig,
    WeightAverage,
    _loss,
    fit,
    load_training_checkpoint,
    prepare_graphs,
)


@pytest.fixture(scope="session")
def entries(shared_dir):
    return load_entries(shared_dir / "data" / "mp_dielectric_tensors.json.gz")


def test_cleaning_matches_the_paper_rules(entries):
    kept, report = clean_entries(entries)
    assert report.n_input == 2890
    assert report.n_output == len(kept) == 2695
    assert sum(report.removed.values()) == 2890 - 2695
    assert all(np.diag(e.eps_electronic).min() >= 1 for e in kept)
    assert all(np.trace(e.eps_electronic) / 3 <= 15 for e in kept)


def test_split_is_seeded_and_disjoint():
    a, b = random_split(2695, 42), random_split(2695, 42)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [len(a[k]) for k in ("train", "validation", "test")] == [2156, 270, 269]
    assert not set(a["train"]) & set(a["test"]) and not set(a["validation"]) & set(a["test"])
    assert not np.array_equal(random_split(2695, 7)["test"], a["test"])


def test_smoke_training_writes_model_card_and_metrics(tiny_model, entries):
    folder, result = tiny_model
    assert result["finished"]
    card = (folder / "MODEL_CARD.md").read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "eps_poly MAE" in card and metrics["split_seed"] == 42
    kept, _ = clean_entries(entries)
    expected_ids = {e.material_id for e in kept[:100] if e.material_id.startswith("mp-")}
    assert set(metrics["material_ids"]) == expected_ids and metrics["n_entries"] == 100
    assert len(metrics["data_sha256"]) == 64
    test = result["test"]
    assert test["n"] == 10 and 0 < test["eps_poly_mae"] < 10
    loaded = load_model(folder / "model.pt")
    assert loaded.name == "tiny" and len(loaded.networks) == 1 and len(loaded.checksum) == 64
    assert loaded.config.avg_num_neighbors > 5 and 1 < loaded.config.target_shift < 20
    gaps = loaded.metadata["band_gaps"]
    assert sum(gaps.values()) == 100 and gaps["matched_from_id_table"] > 0
    assert f"{gaps['matched_from_id_table']} matched from `mp_dielectric_ids.csv`" in card


def test_resumed_training_equals_uninterrupted(entries, tmp_path):
    kept, _ = clean_entries(entries[:200])
    graphs = prepare_graphs(kept[:40], 5.0)
    targets = np.stack([e.irreps for e in kept[:40]])
    train, val = (graphs[:30], targets[:30]), (graphs[30:], targets[30:])
    config = TrainConfig(max_epochs=3, batch_size=10)
    full, state_full = fit(TINY, config, train, val, tmp_path / "full.ckpt", device="cpu")
    fit(
        TINY,
        TrainConfig(max_epochs=1, batch_size=10),
        train,
        val,
        tmp_path / "part.ckpt",
        device="cpu",
    )
    resumed, state = fit(TINY, config, train, val, tmp_path / "part.ckpt", device="cpu")
    assert state.epoch == state_full.epoch == 3
    assert [h["val_loss"] for h in state.history] == pytest.approx(
        [h["val_loss"] for h in state_full.history]
    )
    for (k, v), (_, w) in zip(
        full.state_dict().items(), resumed.state_dict().items(), strict=False
    ):
        torch.testing.assert_close(v, w, msg=k)


def _write_inputs(folder, entries):
    folder.mkdir()
    entries[0].structure.to(filename=str(folder / "first.cif"))
    entries[1].structure.to(filename=str(folder / "POSCAR"))
    (folder / "broken.cif").write_text("data_nothing\n_cell_length_a 3\n")
    Structure(Lattice.cubic(4), [{"Fe": 0.5, "Co": 0.5}, "O"], [[0, 0, 0], [0.5] * 3]).to(
        filename=str(folder / "disordered.cif")
    )
    Structure(Lattice.cubic(4), ["Og", "O"], [[0, 0, 0], [0.5] * 3]).to(
        filename=str(folder / "og.cif")
    )
    a, b = (str(el) for el in entries[0].structure.composition.elements[:2])  # seen in training
    Structure(Lattice.cubic(15), [a, b, a], [[0, 0, 0], [0.15, 0, 0], [0.5] * 3]).to(
        filename=str(folder / "isolated.cif")
    )
    records = [
        {"material_id": "mp-x1", "structure": entries[2].structure.as_dict(), "other": 1},
        {"structure": entries[3].structure.as_dict()},
    ]
    (folder / "pool.json").write_text(json.dumps(records))


def test_predict_cli_reports_bad_inputs_and_keeps_going(tiny_model, entries, tmp_path):
    folder, _ = tiny_model
    inputs = tmp_path / "inputs"
    _write_inputs(inputs, entries)
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(inputs),
            "--model",
            str(folder),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "3",
        ],
    )
    assert result.exit_code == 3, result.output
    lines = {r["material_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(lines) == {
        "first.cif",
        "POSCAR",
        "broken.cif",
        "disordered.cif",
        "og.cif",
        "isolated.cif",
        "mp-x1",
        "pool.json#1",
    }
    assert "unreadable" in lines["broken.cif"]["error"]
    assert "disordered" in lines["disordered.cif"]["error"]
    assert "not seen in training: Og" in lines["og.cif"]["error"]
    assert "isolated molecule or cluster in a box" in lines["isolated.cif"]["error"]
    good = lines["mp-x1"]
    eps = np.array(good["dielectric_tensor"])
    np.testing.assert_allclose(eps, eps.T)
    np.testing.assert_allclose(good["eigenvalues"], np.linalg.eigvalsh(eps), atol=1e-9)
    assert good["eps_poly"] == pytest.approx(np.trace(eps) / 3)
    assert good["anisotropy_ratio"] == pytest.approx(
        good["eigenvalues"][2] / good["eigenvalues"][0]
    )
    assert (
        good["model"] == "tiny"
        and good["formula"] == entries[2].structure.composition.reduced_formula
    )


def _two_member_model(source, target, noise: float) -> None:
    """Write ``source``'s model with a second member: its weights plus Gaussian ``noise``."""
    payload = torch.load(source, weights_only=True)
    member = payload["state_dicts"][0]
    perturbed = {
        k: v + noise * torch.randn_like(v) if v.is_floating_point() else v
        for k, v in member.items()
    }
    payload["state_dicts"] = [member, perturbed]
    torch.save(payload, target)


def test_python_api_matches_cli_shape_and_ensemble_spread(tiny_model, entries, tmp_path):
    folder, _ = tiny_model
    _two_member_model(folder / "model.pt", tmp_path / "ens.pt", noise=0.05)
    docs = predict_structures(
        [entries[5].structure, entries[6].structure], model=str(tmp_path / "ens.pt"), device="cpu"
    )
    assert len(docs) == 2 and not any(isinstance(d, PredictionFailure) for d in docs)
    single = predict_structures([entries[5].structure], model=str(folder), device="cpu")[0]
    assert docs[0].n_models == 2 and docs[0].eps_poly_std > 0 and docs[0].anisotropy_ratio_std >= 0
    assert single.n_models == 1 and single.eps_poly_std is None


def test_model_resolution_errors(tmp_path):
    with pytest.raises(AnisoscreenError, match="not found"):
        load_model("no-such-model", tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(AnisoscreenError, match="cannot read model file"):
        load_model(tmp_path / "junk.pt")


def test_evaluate_cli_on_test_split(tiny_model, tmp_path):
    folder, result = tiny_model
    plot = tmp_path / "parity.png"
    out = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(folder),
            "--device",
            "cpu",
            "--data",
            str(tmp_path / "missing.json"),
        ],
    )
    assert out.exit_code != 0
    out = CliRunner().invoke(
        app, ["evaluate", "--model", str(folder), "--device", "cpu", "--parity-plot", str(plot)]
    )
    assert out.exit_code == 0, out.output
    assert "test split" in out.output and "(n=10)" in out.output  # the split it was trained with
    assert plot.stat().st_size > 10_000


def test_evaluate_selected_members_of_an_ensemble(tiny_model, shared_dir, tmp_path):
    from anisoscreen.model.training.evaluate import evaluate_model

    folder, result = tiny_model
    _two_member_model(folder / "model.pt", tmp_path / "pair.pt", noise=0.2)
    data = shared_dir / "data" / "mp_dielectric_tensors.json.gz"

    first = evaluate_model(str(tmp_path / "pair.pt"), data, device="cpu", members=[0])
    second = evaluate_model(str(tmp_path / "pair.pt"), data, device="cpu", members=[1])
    both = evaluate_model(str(tmp_path / "pair.pt"), data, device="cpu")
    # member 0 is the tiny model itself, scored as at the end of its training
    assert first["members"] == [0] and both["members"] == [0, 1]
    assert first["metrics"]["eps_poly_mae"] == pytest.approx(result["test"]["eps_poly_mae"])
    assert second["metrics"]["eps_poly_mae"] != pytest.approx(first["metrics"]["eps_poly_mae"])
    with pytest.raises(AnisoscreenError, match="not in this 2-member model"):
        evaluate_model(str(tmp_path / "pair.pt"), data, device="cpu", members=[2])

    out = CliRunner().invoke(
        app, ["evaluate", "--model", str(tmp_path / "pair.pt"), "--device", "cpu", "--member", "1"]
    )
    assert out.exit_code == 0, out.output
    assert "members [1]" in out.output
    assert f"{second['metrics']['eps_poly_mae']:.3f}" in out.output


def test_model_card_reports_the_readout_ablation(tiny_model, tmp_path):
    from anisoscreen.model.training.model_card import write_model_card

    folder, _ = tiny_model
    metadata = json.loads((folder / "metrics.json").read_text())
    scores = {"eps_poly_mae": 0.4, "anisotropy_ratio_mae": 0.1, "component_mae": 0.2, "n": 9}
    metadata["readout_ablation"] = {
        "description": "Same training, different read-out.",
        "rows": [
            {"label": "equivariant 0e+2e", "validation": scores, "test": scores},
            {
                "label": "scalar 6x0e",
                "validation": {**scores, "eps_poly_mae": 0.55},
                "test": {**scores, "anisotropy_ratio_mae": 0.25},
            },
        ],
    }
    loaded = load_model(folder / "model.pt")
    write_model_card(tmp_path / "card.md", "tiny", "1.0.0", loaded.config, metadata)
    card = (tmp_path / "card.md").read_text()
    assert "## Equivariant vs scalar read-out" in card
    assert "| scalar 6x0e | 0.550 / 0.100 | 0.400 / 0.250 | 0.200 |" in card
    assert "## Equivariant vs scalar read-out" not in (folder / "MODEL_CARD.md").read_text()


def test_ensemble_improves_needs_both_metrics_no_worse_and_one_better():
    from anisoscreen.model.training.pipeline import ensemble_improves

    old = {"eps_poly_mae": 0.40, "anisotropy_ratio_mae": 0.10}
    assert ensemble_improves(old, {"eps_poly_mae": 0.39, "anisotropy_ratio_mae": 0.10})
    assert ensemble_improves(old, {"eps_poly_mae": 0.40, "anisotropy_ratio_mae": 0.09})
    assert not ensemble_improves(old, dict(old))
    assert not ensemble_improves(old, {"eps_poly_mae": 0.30, "anisotropy_ratio_mae": 0.11})
    # eps0 has no a_r: MAE_ten stands in
    ionic = {"eps_poly_mae": 3.0, "anisotropy_ratio_mae": None, "tensor_mae": 2.0}
    assert ensemble_improves(ionic, {**ionic, "tensor_mae": 1.9})
    assert not ensemble_improves(ionic, {**ionic, "eps_poly_mae": 2.0, "tensor_mae": 2.1})


def test_extend_ensemble_trains_new_seeds_and_keeps_them_only_if_validation_improves(
    tiny_model, shared_dir, tmp_path
):
    import shutil

    from anisoscreen.model.training.evaluate import evaluate_model
    from anisoscreen.model.training.pipeline import ensemble_improves, extend_ensemble

    source, _ = tiny_model
    folder = tmp_path / "tiny"
    shutil.copytree(source, folder)
    data = shared_dir / "data" / "mp_dielectric_tensors.json.gz"
    # a section written after training (as studies/readout_ablation.py does) is kept
    metrics_file = folder / "metrics.json"
    ablation = {"description": "two read-outs", "rows": []}
    metrics_file.write_text(
        json.dumps({**json.loads(metrics_file.read_text()), "readout_ablation": ablation})
    )
    with pytest.raises(AnisoscreenError, match="seeds \\[0\\]"):
        extend_ensemble(folder, data, (0,), "1.1.0", device="cpu")  # seed 0 is a member already

    outcome = extend_ensemble(folder, data, (1,), "1.1.0", device="cpu")
    assert outcome["finished"]
    validation = outcome["validation"]
    assert outcome["kept"] == ensemble_improves(validation["current"], validation["extended"])
    assert validation["extended"]["n"] == validation["current"]["n"] == 10
    loaded = load_model(folder / "model.pt")
    kept = outcome["kept"]
    assert len(loaded.networks) == (2 if kept else 1)
    assert loaded.version == ("1.1.0" if kept else "1.0.0")
    assert loaded.metadata["seeds"] == ([0, 1] if kept else [0])
    # the numbers reported are those of the model file now in place
    now = evaluate_model(str(folder / "model.pt"), data, subset="validation", device="cpu")
    expected = validation["extended" if kept else "current"]
    assert now["metrics"]["eps_poly_mae"] == pytest.approx(expected["eps_poly_mae"], rel=1e-6)
    if kept:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert [m["seed"] for m in metrics["metrics"]["members"]] == [0, 1]
        assert metrics["metrics"]["test"]["eps_poly_mae"] == outcome["test"]["eps_poly_mae"]
        assert metrics["readout_ablation"] == ablation
        card = (folder / "MODEL_CARD.md").read_text()
        assert "[0, 1]" in card and "two read-outs" in card


def test_epoch_printer_prints_one_line_per_epoch(capsys):
    from anisoscreen.model.training.pipeline import epoch_printer

    progress = epoch_printer()
    progress(3, {"epoch": 7, "train_loss": 0.25, "val_loss": 0.5, "lr": 0.003, "seconds": 31.5})
    line = capsys.readouterr().out.strip()
    assert line.startswith("seed 3 epoch    7 train 0.2500 val 0.5000 lr 0.00300 31.5s [")


def test_annealing_restarts_model_selection_and_resumes_into_the_phase(entries, tmp_path):
    kept, _ = clean_entries(entries[:200])
    graphs = prepare_graphs(kept[:40], 5.0)
    targets = np.stack([e.irreps for e in kept[:40]])
    train, val = (graphs[:30], targets[:30]), (graphs[30:], targets[30:])
    config = TrainConfig(max_epochs=4, batch_size=10, anneal_from=2, anneal_decay=0.5)
    full, state_full = fit(TINY, config, train, val, tmp_path / "full.ckpt", device="cpu")
    lrs = [h["lr"] for h in state_full.history]
    assert lrs[1] == pytest.approx(lrs[0] * config.lr_decay)
    assert lrs[2] == pytest.approx(lrs[1] * 0.5) and lrs[3] == pytest.approx(lrs[2] * 0.5)
    assert state_full.best_epoch in (2, 3)  # chosen among the annealing epochs only
    assert state_full.best_val_loss == min(h["val_loss"] for h in state_full.history[2:])

    # a run trained without the phase resumes into it, and ends where the full run ends
    plain = TrainConfig(max_epochs=2, batch_size=10)
    fit(TINY, plain, train, val, tmp_path / "part.ckpt", device="cpu")
    resumed, state = fit(TINY, config, train, val, tmp_path / "part.ckpt", device="cpu")
    assert [h["val_loss"] for h in state.history] == pytest.approx(
        [h["val_loss"] for h in state_full.history]
    )
    for (k, v), (_, w) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(v, w, msg=k)


def test_weight_average_is_an_exponential_moving_average_of_the_steps():
    net = torch.nn.Linear(2, 1)
    average = WeightAverage(net, decay=0.75)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(4.0)
    average.update()
    torch.testing.assert_close(average.average["weight"], start + 0.25 * 4.0)
    with average.swapped_in():
        torch.testing.assert_close(net.weight, start + 1.0)
    torch.testing.assert_close(net.weight.detach(), start + 4.0)  # raw weights back


def test_ema_training_selects_and_saves_the_average_and_resumes_it(entries, tmp_path):
    kept, _ = clean_entries(entries[:200])
    graphs = prepare_graphs(kept[:40], 5.0)
    targets = np.stack([e.irreps for e in kept[:40]])
    train, val = (graphs[:30], targets[:30]), (graphs[30:], targets[30:])
    config = TrainConfig(max_epochs=3, batch_size=10, ema_decay=0.9)
    full, state_full = fit(TINY, config, train, val, tmp_path / "full.ckpt", device="cpu")
    saved = load_training_checkpoint(tmp_path / "full.ckpt")
    # the last epoch's average is in the checkpoint, and differs from the raw weights
    assert any(
        not torch.equal(saved["weight_average"][k], saved["model"][k]) for k in saved["model"]
    )
    # the validated loss is the average's: recomputing it with the returned weights agrees
    best = state_full.history[state_full.best_epoch]["val_loss"]
    assert _loss(full, *val, torch.device("cpu"), config) == pytest.approx(best, rel=1e-5)

    # stopped after two epochs, a run resumes with its average and ends where the full run ends
    fit(TINY, replace(config, max_epochs=2), train, val, tmp_path / "part.ckpt", device="cpu")
    resumed, state = fit(TINY, config, train, val, tmp_path / "part.ckpt", device="cpu")
    assert [h["val_loss"] for h in state.history] == pytest.approx(
        [h["val_loss"] for h in state_full.history]
    )
    for (k, v), (_, w) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(v, w, msg=k)

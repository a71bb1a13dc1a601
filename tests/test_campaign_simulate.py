"""Offline campaigns: ``anisoscreen campaign simulate`` end to end on a small oracle, and the
fine-tuning that learns from revealed labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ORACLE = Path(__file__).parent / "data" / "campaign_oracle_40.json.gz"

pytestmark = pytest.mark.filterwarnings("ignore")


def _true_ar(oracle):
    from anisoscreen.screening.objectives import tensor_values as objective_values

    return {e.material_id: float(objective_values(e.dielectric_tensor, "ar")) for e in oracle}


@pytest.mark.slow
def test_simulate_cli_end_to_end(tiny_ensemble, tmp_path):
    from anisoscreen.campaign.simulate import load_oracle
    from anisoscreen.cli import app
    from anisoscreen.model.checkpoint import load_model

    out, plot = tmp_path / "ucb.json", tmp_path / "hits.png"
    args = ["campaign", "simulate", "--labels", str(ORACLE), "--strategy", "ucb"]
    args += ["--rounds", "3", "--batch-size", "4", "--seed", "1", "--top-k", "6"]
    args += ["--output", str(out), "--model", str(tiny_ensemble), "--epochs", "1"]
    args += ["--replay", "8", "--plot", str(plot)]
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("ucb: ")

    report = json.loads(out.read_text())
    assert {"strategy", "rounds", "total_hits"} <= set(report) and report["strategy"] == "ucb"
    oracle = load_oracle(ORACLE)
    known = set(load_model(tiny_ensemble).config.elements)
    pool = [e for e in oracle if all(el.Z in known for el in e.structure.composition.elements)]
    assert report["pool_size"] == len(pool) == len(oracle) - len(report["dropped"])
    truth = {m: v for m, v in _true_ar(oracle).items() if m in {e.material_id for e in pool}}
    top = set(sorted(truth, key=truth.get, reverse=True)[:6])

    seen: list[str] = []
    for k, record in enumerate(report["rounds"]):
        assert len(record["picked"]) == 4 and not set(record["picked"]) & set(seen)
        assert set(record["picked"]) <= set(truth)
        seen += record["picked"]
        # hits and best are recomputed here from the hidden labels
        assert record["hits"] == len(set(record["picked"]) & top)
        assert record["best"] == pytest.approx(max(truth[m] for m in seen))
        rest = [m for m in truth if m not in seen[: -len(record["picked"])]]
        assert record["mae_unlabelled"] > 0 and len(rest) == len(truth) - 4 * k
    assert report["total_hits"] == sum(r["hits"] for r in report["rounds"])
    # rounds after the first rank with the fine-tuned versions
    assert [r["model"] for r in report["rounds"]] == [
        "tiny-ensemble 1.0.0",
        "sim-ucb-s1-r1 r1",
        "sim-ucb-s1-r2 r2",
    ]
    assert plot.stat().st_size > 1000


@pytest.mark.slow
def test_random_baseline_depends_on_the_seed_only(tiny_ensemble):
    from anisoscreen.campaign.simulate import SimulationConfig, load_oracle, simulate
    from anisoscreen.settings import get_settings

    oracle = load_oracle(ORACLE)
    shared = get_settings().shared

    def run(seed):
        config = SimulationConfig(
            strategy="random", rounds=2, batch_size=5, seed=seed, model=str(tiny_ensemble)
        )
        return [r["picked"] for r in simulate(oracle, config, shared)["rounds"]]

    assert run(3) == run(3)
    assert run(3) != run(4)


def oracle_the_model_knows(model):
    """The oracle's entries made only of elements ``model`` was trained on."""
    from anisoscreen.campaign.simulate import load_oracle

    known = set(model.config.elements)
    return [
        e
        for e in load_oracle(ORACLE)
        if all(el.Z in known for el in e.structure.composition.elements)
    ]


@pytest.mark.slow
def test_finetune_learns_the_new_labels_and_records_them(tiny_ensemble, tmp_path):
    from anisoscreen.campaign.finetune import FinetuneConfig, LabelledEntry, finetune_model
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.dataset import DielectricEntry
    from anisoscreen.model.training.evaluate import predict_irreps
    from anisoscreen.model.training.train import prepare_graphs

    model = load_model(tiny_ensemble)
    oracle = oracle_the_model_knows(model)[:4]
    labels = [
        LabelledEntry(
            DielectricEntry(e.material_id, "", e.structure, e.dielectric_tensor),
            {"source": "validation", "job_uuid": f"uuid-{i}"},
        )
        for i, e in enumerate(oracle)
    ]
    graphs = prepare_graphs([label.entry for label in labels], model.config.cutoff)
    targets = np.stack([label.entry.irreps for label in labels])

    def error(networks):
        return float(np.abs(predict_irreps(networks, graphs) - targets).mean())

    before = error(model.networks)
    config = FinetuneConfig(epochs=60, replay=0, lr=1e-2, batch_size=4)
    path = finetune_model(model, labels, [], config, tmp_path / "v2", "tiny-v2", "2")
    tuned = load_model(path)
    assert len(tuned.networks) == 3 and tuned.name == "tiny-v2"
    assert error(tuned.networks) < 0.8 * before
    card = tuned.metadata["finetune"]
    assert [row["job_uuid"] for row in card["labels"]] == ["uuid-0", "uuid-1", "uuid-2", "uuid-3"]
    assert card["parent"]["checksum"] == model.checksum and card["replay_material_ids"] == []
    assert all(h[-1] < h[0] for h in card["loss_history"])
    assert "uuid-3" in (tmp_path / "v2" / "MODEL_CARD.md").read_text()
    # the parent is untouched
    assert error(load_model(tiny_ensemble).networks) == pytest.approx(before)


@pytest.mark.slow
def test_finetune_gives_the_same_weights_for_any_number_of_cores(tiny_ensemble, tmp_path):
    """Members train side by side, one intra-op thread each: 1 or 2 cores, same bits."""
    import torch

    from anisoscreen.campaign.finetune import FinetuneConfig, LabelledEntry, finetune_model
    from anisoscreen.model.checkpoint import load_model
    from anisoscreen.model.training.dataset import DielectricEntry

    model = load_model(tiny_ensemble)
    oracle = oracle_the_model_knows(model)[:6]
    labels = [
        LabelledEntry(DielectricEntry(e.material_id, "", e.structure, e.dielectric_tensor))
        for e in oracle
    ]
    config = FinetuneConfig(epochs=2, replay=0, lr=1e-2, batch_size=4)
    cores = torch.get_num_threads()
    weights, lines = {}, {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            seen: list[str] = []
            path = finetune_model(
                model, labels, [], config, tmp_path / str(threads), "t", "2", seen.append
            )
            assert torch.get_num_threads() == threads  # the caller's setting is restored
            weights[threads] = [n.state_dict() for n in load_model(path).networks]
            lines[threads] = sorted(seen)
    finally:
        torch.set_num_threads(cores)
    assert len(weights[1]) == 3 and lines[1] == lines[2] and len(lines[1]) == 3
    for one, two in zip(weights[1], weights[2], strict=True):
        assert all(torch.equal(one[key], two[key]) for key in one)
    # fine-tuning moved every member
    assert not all(
        torch.equal(weights[1][0][key], model.networks[0].state_dict()[key])
        for key in weights[1][0]
    )

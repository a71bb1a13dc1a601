"""Training recipes: one front-end (``anisoscreen train --config``), every shipped model's recipe."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from anisoscreen.cli import app
from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import DEFAULT_MODELS, read_model_info
from anisoscreen.model.nn.network import ModelConfig
from anisoscreen.model.training.recipe import (
    DATA_FIELDS,
    TrainingRecipe,
    default_recipe,
    load_recipe,
)
from anisoscreen.model.training.train import TrainConfig

MODELS = Path(__file__).resolve().parents[1] / "models"
TRAINED = sorted(p.parent.name for p in MODELS.glob("*/model.pt"))


def test_every_shipped_model_has_a_recipe_beside_its_card():
    assert TRAINED
    for name in TRAINED:
        assert (MODELS / name / "MODEL_CARD.md").is_file(), name
        assert load_recipe(MODELS / name / "recipe.yaml").name == name


@pytest.mark.parametrize("name", TRAINED)
def test_recipe_reproduces_the_model_it_trained(name):
    recipe = load_recipe(MODELS / name / "recipe.yaml")
    metrics = json.loads((MODELS / name / "metrics.json").read_text())
    info = read_model_info(MODELS / name / "model.pt")
    assert recipe.version == info.version
    assert list(recipe.seeds) == metrics["seeds"] and recipe.split_seed == metrics["split_seed"]
    saved = metrics["train_config"]
    for f in fields(TrainConfig):
        if f.name == "seed":
            continue
        # files written before a field existed trained with its default
        expected = saved.get(f.name, getattr(TrainConfig(), f.name))
        if isinstance(expected, list):
            expected = tuple(expected)
        assert getattr(recipe.train, f.name) == expected, f.name
    for f in fields(ModelConfig):
        if f.name not in DATA_FIELDS:
            assert getattr(recipe.model, f.name) == getattr(info.config, f.name), f.name


def test_v3_recipe_holds_the_study_flags():
    recipe = load_recipe(MODELS / "anisonet-mp-v3" / "recipe.yaml")
    assert (recipe.name, recipe.version, recipe.seeds) == (
        "anisonet-mp-v3",
        "3.4.0",
        tuple(range(8)),
    )
    model, train = recipe.model, recipe.train
    assert (model.mul, model.lmax, model.readout, model.gap_input, model.element_features) == (
        32,
        2,
        "psd_laminate_volume",
        True,
        True,
    )
    assert (train.loss, train.gap_dropout, train.exfoliation_deltas) == (
        "mse_log_eig",
        0.25,
        (2.0, 4.0, 8.0, 12.0, 16.0),
    )
    assert (train.max_epochs, train.anneal_from, train.anneal_decay) == (38, 30, 0.75)
    assert (train.exfoliated_per_epoch, train.max_epochs, train.patience, train.lr_decay) == (
        2,
        38,
        30,
        0.98,
    )


def test_recipes_refuse_unknown_and_data_derived_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, message in [
        ("name: x\nmodel: {mull: 3}\n", "unknown ModelConfig fields mull"),
        ("name: x\ntrain: {lr: 1, epochs: 3}\n", "unknown TrainConfig fields epochs"),
        ("name: x\nmodel: {target_shift: 1.0}\n", "set from the training data"),
        ("name: x\ntrain: {seed: 3}\n", "list them in seeds"),
        ("nmae: x\n", "unknown fields nmae"),
        ("- a list\n", "expected a mapping"),
    ]:
        bad.write_text(text)
        with pytest.raises(AnisoscreenError, match=message):
            load_recipe(bad)
    recipe = TrainingRecipe(name="r", seeds=(1, 2), train=TrainConfig(exfoliation_deltas=(2.0,)))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe.to_dict()))
    assert load_recipe(tmp_path / "r.yaml") == recipe


@pytest.fixture
def captured(monkeypatch):
    """``train_model``'s arguments, instead of training."""
    calls = []

    def fake_train_model(data, folder, name, model_config, train_config, **kwargs):
        calls.append((Path(folder), name, model_config, train_config, kwargs))
        return {"finished": False, "epoch": 0}

    monkeypatch.setattr("anisoscreen.model.training.pipeline.train_model", fake_train_model)
    # this checkout's models, even where another checkout is the installed one
    monkeypatch.setattr("anisoscreen.model.training.recipe.shipped_models", lambda: MODELS)
    return calls


def test_train_defaults_equal_the_shipped_default_recipe(captured, tmp_path):
    out = CliRunner().invoke(app, ["train", "--output-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    folder, name, model_config, train_config, kwargs = captured[0]
    shipped = load_recipe(MODELS / DEFAULT_MODELS[0] / "recipe.yaml")
    assert (name, folder) == ("my-anisonet", tmp_path / "my-anisonet")
    assert (model_config, train_config) == (shipped.model, shipped.train)
    assert (kwargs["seeds"], kwargs["split_seed"]) == (shipped.seeds, shipped.split_seed)
    assert default_recipe().model == shipped.model
    ionic = load_recipe(MODELS / "anisonet-mp-ionic-v1" / "recipe.yaml")
    assert default_recipe("ionic").model == ionic.model
    assert default_recipe("total").model.readout == ionic.model.readout
    assert default_recipe("total").model.target == "total"


def test_train_config_file_with_overrides(captured, tmp_path):
    recipe = MODELS / "anisonet-mp-v3" / "recipe.yaml"
    args = ["train", "--config", str(recipe), "--output-dir", str(tmp_path), "--seed", "3"]
    out = CliRunner().invoke(app, [*args, "--max-epochs", "1", "--lmax", "1"])
    assert out.exit_code == 0, out.output
    folder, name, model_config, train_config, kwargs = captured[0]
    assert (name, folder, kwargs["seeds"], kwargs["version"]) == (
        "anisonet-mp-v3",
        tmp_path / "anisonet-mp-v3",
        (3,),
        "3.4.0",
    )
    assert (model_config.lmax, model_config.readout, model_config.gap_input) == (
        1,
        "psd_laminate_volume",
        True,
    )
    assert (train_config.max_epochs, train_config.gap_dropout) == (1, 0.25)

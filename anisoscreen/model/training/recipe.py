"""Training recipes: the YAML file that ``anisoscreen train --config`` reads.

A recipe names the model and holds the :class:`~anisoscreen.model.nn.network.ModelConfig` and
:class:`~anisoscreen.model.training.train.TrainConfig` fields a training run sets::

    name: anisonet-mp-v2
    version: 2.0.0
    seeds: [0, 1, 2]
    split_seed: 42
    model:
      mul: 32
      lmax: 2
      readout: psd_sum_volume
    train:
      loss: mse_log_eig
      max_epochs: 30
      patience: 30

Fields left out keep their defaults. The fields that training derives from the data
(:data:`DATA_FIELDS`) and the per-member ``seed`` (``seeds`` lists them) are refused. Every
shipped model's recipe sits beside its model card (``models/<name>/recipe.yaml``), and
``anisoscreen train`` without ``--config`` trains the shipped default's recipe for the target
(:func:`default_recipe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checkpoint import DEFAULT_MODELS, RECIPE_FILENAME, shipped_models
from anisoscreen.model.nn.network import ModelConfig
from anisoscreen.model.training.train import TrainConfig

__all__ = [
    "DATA_FIELDS",
    "RECIPE_FILENAME",
    "TrainingRecipe",
    "default_recipe",
    "load_recipe",
]

DATA_FIELDS = frozenset(
    {
        "elements",
        "volume_per_atom",
        "avg_num_neighbors",
        "target_shift",
        "target_scale",
        "born_head",
        "born_scale",
        "atom_feature_channels",
    }
)
"""``ModelConfig`` fields that training sets from the data (or from other fields)."""
_TOP_LEVEL = ("name", "version", "seeds", "split_seed", "model", "train")


@dataclass
class TrainingRecipe:
    """What one training run builds: the name, the members' seeds, the split and both configs.

    Parameters
    ----------
    name
        Model name (the folder under the output folder).
    version
        Model version written to the model file and card.
    seeds
        One ensemble member per seed.
    split_seed
        Seed of the 80/10/10 split.
    model, train
        The network's and the optimisation's settings.
    """

    name: str = "my-anisonet"
    version: str = "1.0.0"
    seeds: tuple[int, ...] = (0,)
    split_seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recipe") -> TrainingRecipe:
        """The recipe of a parsed YAML mapping; unknown or data-derived fields are errors."""
        if not isinstance(data, dict):
            raise AnisoscreenError(f"{source}: expected a mapping with {', '.join(_TOP_LEVEL)}")
        unknown = sorted(set(data) - set(_TOP_LEVEL))
        if unknown:
            raise AnisoscreenError(f"{source}: unknown fields {', '.join(unknown)}")
        model = _section(data.get("model") or {}, ModelConfig, f"{source}: model")
        derived = sorted(DATA_FIELDS & set(model))
        if derived:
            raise AnisoscreenError(
                f"{source}: model fields {', '.join(derived)} are set from the training data"
            )
        train = _section(data.get("train") or {}, TrainConfig, f"{source}: train")
        if "seed" in train:
            raise AnisoscreenError(f"{source}: train.seed is per member; list them in seeds")
        if "exfoliation_deltas" in train:
            train["exfoliation_deltas"] = tuple(float(d) for d in train["exfoliation_deltas"])
        plain: dict[str, Any] = {k: data[k] for k in ("name", "version", "split_seed") if k in data}
        if "version" in plain:
            plain["version"] = str(plain["version"])
        if "seeds" in data:
            plain["seeds"] = tuple(int(s) for s in data["seeds"])
        return cls(**plain, model=ModelConfig(**model), train=TrainConfig(**train))

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a YAML-ready mapping: only the fields that differ from the defaults."""
        model_defaults, train_defaults = ModelConfig(), TrainConfig()
        model = {
            f.name: getattr(self.model, f.name)
            for f in fields(ModelConfig)
            if f.name not in DATA_FIELDS
            and getattr(self.model, f.name) != getattr(model_defaults, f.name)
        }
        train = {
            f.name: getattr(self.train, f.name)
            for f in fields(TrainConfig)
            if f.name != "seed" and getattr(self.train, f.name) != getattr(train_defaults, f.name)
        }
        if "exfoliation_deltas" in train:
            train["exfoliation_deltas"] = list(train["exfoliation_deltas"])
        return {
            "name": self.name,
            "version": self.version,
            "seeds": list(self.seeds),
            "split_seed": self.split_seed,
            "model": model,
            "train": train,
        }

    def with_overrides(
        self,
        *,
        model: dict[str, Any] | None = None,
        train: dict[str, Any] | None = None,
        **top: Any,
    ) -> TrainingRecipe:
        """The recipe with the given values (``None`` values keep the recipe's)."""
        kept = {k: v for k, v in top.items() if v is not None}
        if "seeds" in kept:
            kept["seeds"] = tuple(kept["seeds"])
        return replace(
            self,
            **kept,
            model=replace(self.model, **{k: v for k, v in (model or {}).items() if v is not None}),
            train=replace(self.train, **{k: v for k, v in (train or {}).items() if v is not None}),
        )


def _section(values: Any, cls: type, where: str) -> dict[str, Any]:
    """A recipe section's values, checked against the fields of dataclass ``cls``."""
    if not isinstance(values, dict):
        raise AnisoscreenError(f"{where}: expected a mapping of {cls.__name__} fields")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise AnisoscreenError(f"{where}: unknown {cls.__name__} fields {', '.join(unknown)}")
    return dict(values)


def load_recipe(path: str | Path) -> TrainingRecipe:
    """The recipe in YAML file ``path``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise AnisoscreenError(f"cannot read the recipe {path}: {error}") from error
    return TrainingRecipe.from_dict(data, source=str(path))


def default_recipe(target: str = "electronic") -> TrainingRecipe:
    """The shipped default model's recipe for ``target``: what ``anisoscreen train`` trains.

    ``electronic``: :data:`~anisoscreen.model.checkpoint.DEFAULT_MODELS`' electronic model;
    ``ionic`` and ``total``: the ionic model's recipe (PSD read-out, Huber loss), with that
    target. The name is ``my-anisonet``, so a user's model never shadows a shipped one.
    """
    if target not in ("electronic", "ionic", "total"):
        raise AnisoscreenError(f"unknown target {target!r}; use electronic, ionic or total")
    electronic, ionic = DEFAULT_MODELS
    shipped = electronic if target == "electronic" else ionic
    recipe = load_recipe(shipped_models() / shipped / RECIPE_FILENAME)
    model = ModelConfig.from_dict({**recipe.model.to_dict(), "target": target})
    return replace(recipe, name="my-anisonet", version="1.0.0", model=model)

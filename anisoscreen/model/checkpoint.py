"""Model files: a config saved with the weights (one state dict per ensemble member).

A model file is a ``torch.save`` dict::

    {"format": "anisoscreen-model/1", "name": ..., "version": ...,
     "config": ModelConfig.to_dict(), "state_dicts": [...], "metadata": {...}}

Named models live in ``<data_dir>/models/<name>/model.pt`` (trained by the user), in the
folders of ``$ANISOSCREEN_MODELS``, or in the shipped ``models/<name>/model.pt``: the
repository's top-level ``models/`` folder, which wheels and sdists install as the resource
package ``anisoscreen_models`` (:func:`shipped_models`). Wheels and sdists carry only the
default models (:data:`DEFAULT_MODELS`); a source checkout has every model in ``models/``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anisoscreen.errors import AnisoscreenError
from anisoscreen.model.checksum import file_checksum
from anisoscreen.model.feature_sets import with_feature_channels
from anisoscreen.model.model_header import read_header
from anisoscreen.model.nn.config import ModelConfig
from anisoscreen.settings import DEFAULT_IONIC_MODEL, DEFAULT_MODEL

if TYPE_CHECKING:
    import torch

    from anisoscreen.model.nn.network import AnisoNet

__all__ = [
    "DEFAULT_MODELS",
    "FORMAT",
    "MODELS_ENV",
    "LoadedModel",
    "atomic_torch_save",
    "load_model",
    "model_search_paths",
    "resolve_model_path",
    "save_model",
    "shipped_models",
]

FORMAT = "anisoscreen-model/1"
MODEL_FILENAME = "model.pt"
SHIPPED_PACKAGE = "anisoscreen_models"
"""The installed name of the repository's ``models/`` folder (see ``setup.py``)."""
DEFAULT_MODELS = (DEFAULT_MODEL, DEFAULT_IONIC_MODEL)
"""The models a wheel or sdist ships (electronic and ionic default); ``setup.py`` lists the same."""
MODELS_ENV = "ANISOSCREEN_MODELS"
"""Environment variable: extra folders of named models (``os.pathsep``-separated)."""
MODELS_SOURCE = "the models/ folder of the anisoscreen source repository (or its release assets)"
"""Where the models that do not ship with the package are published."""
RECIPE_FILENAME = "recipe.yaml"
"""A model folder's training recipe (``anisoscreen train --config``)."""


def shipped_models() -> Path:
    """Folder of the shipped models: the installed resource package, else the checkout's."""
    from importlib.resources import files

    try:
        return Path(str(files(SHIPPED_PACKAGE)))
    except ModuleNotFoundError:  # running from a source checkout that is not installed
        return Path(__file__).resolve().parents[2] / "models"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    import torch

    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def model_search_paths(data_dir: Path | None = None) -> list[Path]:
    """Folders searched for named models, first match wins.

    ``<data_dir>/models``, then each folder of ``$ANISOSCREEN_MODELS``, then the shipped models.
    """
    paths = []
    if data_dir is not None:
        paths.append(Path(data_dir) / "models")
    extra = os.environ.get(MODELS_ENV, "")
    paths.extend(Path(folder).expanduser() for folder in extra.split(os.pathsep) if folder)
    paths.append(shipped_models())
    return paths


def resolve_model_path(name_or_path: str | Path, data_dir: Path | None = None) -> Path:
    """Turn a model name or a path into the model file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir() and (candidate / MODEL_FILENAME).is_file():
        return candidate / MODEL_FILENAME
    folders = model_search_paths(data_dir)
    for folder in folders:
        path = folder / str(name_or_path) / MODEL_FILENAME
        if path.is_file():
            return path
    if candidate.suffix == ".pt" or len(candidate.parts) > 1:  # a path, not a name
        raise AnisoscreenError(
            f"model {name_or_path!r} not found: no such file, nor a folder with {MODEL_FILENAME}"
        )
    for folder in folders:
        recipe = folder / str(name_or_path) / RECIPE_FILENAME
        if recipe.is_file():  # a recipe-only folder: the weights are rebuilt, not committed
            raise AnisoscreenError(
                f"model {name_or_path!r} has no weights in {recipe.parent}, only its recipe: "
                f"train them with `anisoscreen train --config {recipe}` (written to "
                f"<data dir>/models/{name_or_path}/, which is searched first)"
            )
    searched = ", ".join(str(p) for p in folders)
    raise AnisoscreenError(
        f"model {name_or_path!r} not found: the package ships only {', '.join(DEFAULT_MODELS)}; "
        f"get models/{candidate.name}/ from {MODELS_SOURCE} into a folder named in "
        f"${MODELS_ENV} (or <data dir>/models), or pass the model file's path (searched {searched})"
    )


@dataclass
class LoadedModel:
    """An ensemble of one or more networks sharing one config."""

    name: str
    version: str
    config: ModelConfig
    networks: list[AnisoNet]
    checksum: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def elements(self) -> set[int]:
        return set(self.config.elements)

    def to(self, device: torch.device | str) -> LoadedModel:
        for net in self.networks:
            net.to(device)
        return self


def save_model(
    path: str | Path,
    config: ModelConfig,
    state_dicts: list[dict[str, torch.Tensor]],
    name: str,
    version: str,
    metadata: dict[str, Any] | None = None,
    storage_dtype: torch.dtype | None = None,
) -> Path:
    """Write a model file atomically.

    Floating-point weights are stored as ``storage_dtype`` (``None``: ``torch.float32``;
    ``torch.float16`` halves the file; :func:`load_model` computes in float32 either way).
    """
    import torch

    storage_dtype = storage_dtype or torch.float32

    def stored(value: torch.Tensor) -> torch.Tensor:
        value = value.detach().cpu()
        return value.to(storage_dtype) if value.is_floating_point() else value

    payload = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "config": config.to_dict(),
        "state_dicts": [{k: stored(v) for k, v in sd.items()} for sd in state_dicts],
        "metadata": metadata or {},
    }
    atomic_torch_save(payload, path)
    return Path(path)


def _read_payload(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The checked payload of a model file; with ``mmap`` the weights stay on disk."""
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # corrupted or foreign file
        raise AnisoscreenError(f"cannot read model file {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AnisoscreenError(f"{path} is not an anisoscreen model file ({FORMAT})")
    return payload


def _config_of(payload: dict[str, Any]) -> ModelConfig:
    """The config of a model file's payload, with its atom feature widths filled in."""
    return with_feature_channels(ModelConfig.from_dict(payload["config"]))


@dataclass
class ModelInfo:
    """What a model file says about itself, without building its networks."""

    name: str
    version: str
    config: ModelConfig
    metadata: dict[str, Any]
    path: Path

    @property
    def element_symbols(self) -> list[str]:
        """Symbols of the elements the model was trained on."""
        from pymatgen.core import Element

        return [Element.from_Z(z).symbol for z in self.config.elements]

    @property
    def material_ids(self) -> list[str]:
        """Material ids of the model's data set (empty when not recorded)."""
        return list(self.metadata.get("material_ids", []))


def read_model_info(name_or_path: str | Path, data_dir: Path | None = None) -> ModelInfo:
    """Name, version, config and metadata of a model file, its weights not read.

    Read without torch (:mod:`~anisoscreen.model.model_header`); a file that reader does not
    take is opened by ``torch.load`` (weights memory-mapped), which reports what is wrong.
    """
    path = resolve_model_path(name_or_path, data_dir)
    payload = read_header(path, FORMAT) or _read_payload(path, mmap=True)
    return ModelInfo(
        name=payload["name"],
        version=payload["version"],
        config=_config_of(payload),
        metadata=payload.get("metadata", {}),
        path=path,
    )


def load_model(
    name_or_path: str | Path,
    data_dir: Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load a model file (by name or path) into evaluation-mode networks (``None``: float32)."""
    import torch

    from anisoscreen.model.nn.network import AnisoNet  # e3nn: only when networks are built

    path = resolve_model_path(name_or_path, data_dir)
    payload = _read_payload(path)
    config = _config_of(payload)
    networks = []
    for state in payload["state_dicts"]:
        net = AnisoNet(config)
        net.load_state_dict(state)
        networks.append(net.to(device=device, dtype=dtype or torch.float32).eval())
    return LoadedModel(
        name=payload["name"],
        version=payload["version"],
        config=config,
        networks=networks,
        checksum=file_checksum(path),
        path=path,
        metadata=payload.get("metadata", {}),
    )

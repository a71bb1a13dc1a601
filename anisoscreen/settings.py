"""Every configurable default of anisoscreen, in one settings object.

Values are resolved in this order (first wins):

1. explicit arguments (the CLI's ``--store`` / ``--data-dir`` / ... flags),
2. ``ANISOSCREEN_*`` environment variables (``ANISOSCREEN_STORE``, ``ANISOSCREEN_DATA_DIR``, ...),
3. a YAML file: ``$ANISOSCREEN_CONFIG`` if set, else ``<user config dir>/anisoscreen/config.yaml``,
4. the defaults below.

The Materials Project API key is read from ``MP_API_KEY`` (or ``ANISOSCREEN_MP_API_KEY``) and
kept as a secret: it never appears in ``repr``, logs, errors or the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = ["AnisoscreenSettings", "default_config_file", "get_settings"]

APP_NAME = "anisoscreen"


def default_config_file() -> Path:
    """The YAML configuration file: ``$ANISOSCREEN_CONFIG`` or the user config directory."""
    env = os.environ.get("ANISOSCREEN_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.yaml"


def _default_shared_dir() -> Path:
    """``../shared`` next to the working directory, else next to the source checkout."""
    for candidate in (Path.cwd().parent / "shared", Path(__file__).resolve().parents[2] / "shared"):
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared"


class AnisoscreenSettings(BaseSettings):
    """Configuration of stores, data locations, the default model and compute.

    Parameters
    ----------
    data_dir
        Folder for the embedded results store, caches and downloaded checkpoints.
    store
        Results store: ``"monty"`` (embedded, on disk under ``data_dir``; the default),
        ``"memory"`` (tests; lost on exit), a ``mongodb://`` / ``mongodb+srv://`` URI, or the
        path to a YAML/JSON file holding a serialised maggma store (``@module``/``@class``).
    database
        Database name used by the embedded and MongoDB stores.
    collection_prefix
        Prefix of every collection name (``<prefix>candidates``, ``<prefix>predictions``...).
    shared
        The shared data folder (training data, candidate pool, VASP outputs).
    model
        Default model: a name under the package's ``models/`` folder or a checkpoint path.
    ionic_model
        Optional ionic (eps0) model of the model set; with it, predictions and screening
        also report eps_ionic and eps_total = eps_inf + eps_ionic. ``None``: electronic only.
    device
        ``auto`` (GPU when there is one), ``cpu`` or ``cuda``.
    batch_size
        Structures per inference batch.
    mp_api_key
        Materials Project API key.
    """

    model_config = SettingsConfigDict(
        env_prefix="ANISOSCREEN_", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    store: str = "monty"
    database: str = "anisoscreen"
    collection_prefix: str = ""
    shared: Path = Field(default_factory=_default_shared_dir)
    model: str = "anisonet-mp-v1"
    ionic_model: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=64, ge=1)
    mp_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANISOSCREEN_MP_API_KEY", "MP_API_KEY")
    )

    @field_validator("data_dir", "shared", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: arguments > environment > YAML config file > defaults."""
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=default_config_file())
        return (init_settings, env_settings, yaml_source)

    @property
    def embedded_store_path(self) -> Path:
        """Folder of the embedded (montydb) results store."""
        return self.data_dir / "store"

    def describe(self) -> dict[str, Any]:
        """A printable summary that never contains the API key."""
        return {
            "data_dir": str(self.data_dir),
            "store": self.store,
            "database": self.database,
            "shared": str(self.shared),
            "model": self.model,
            "ionic_model": self.ionic_model,
            "device": self.device,
            "batch_size": self.batch_size,
            "mp_api_key": "set" if self.mp_api_key else "not set",
            "config_file": str(default_config_file()),
        }


def get_settings(**overrides: Any) -> AnisoscreenSettings:
    """Build settings; ``None`` overrides are ignored so CLI flags left unset fall through."""
    return AnisoscreenSettings(**{k: v for k, v in overrides.items() if v is not None})


def store_overrides(settings: AnisoscreenSettings) -> dict[str, Any]:
    """The settings a job needs to rebuild the same results store (JSON-serialisable)."""
    return {
        "store": settings.store,
        "data_dir": str(settings.data_dir),
        "database": settings.database,
        "collection_prefix": settings.collection_prefix,
    }

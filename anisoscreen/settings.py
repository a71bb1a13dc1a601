"""Every configurable default of anisoscreen, in one settings object.

Values are resolved in this order (first wins):

1. explicit arguments (the CLI's ``--store`` / ``--data-dir`` / ... flags),
2. ``ANISOSCREEN_*`` environment variables (``ANISOSCREEN_STORE``, ``ANISOSCREEN_DATA_DIR``, ...),
3. a YAML file: ``$ANISOSCREEN_CONFIG`` if set, else ``<user config dir>/anisoscreen/config.yaml``,
4. the defaults below.

The Materials Project API key is read from ``MP_API_KEY`` (or ``ANISOSCREEN_MP_API_KEY``) and
kept as a secret: it never appears in ``repr``, logs, errors or the store.

Every fault is a one-line :class:`~anisoscreen.errors.ConfigError` naming the key and where the
value came from: a YAML file that does not parse or is not a mapping, an unknown key in it, a
value of the wrong type, and a ``$ANISOSCREEN_CONFIG`` (or ``--config``) path that does not
exist. Only the implicit default file may be absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from anisoscreen.errors import ConfigError

__all__ = ["AnisoscreenSettings", "default_config_file", "get_settings", "redact_store"]

APP_NAME = "anisoscreen"
CONFIG_ENV = "ANISOSCREEN_CONFIG"


def default_config_file() -> Path:
    """The YAML configuration file: ``$ANISOSCREEN_CONFIG`` or the user config directory."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.yaml"


def _default_shared_dir() -> Path:
    """``../shared`` next to the working directory, else next to the source checkout."""
    for candidate in (Path.cwd().parent / "shared", Path(__file__).resolve().parents[2] / "shared"):
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared"


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    """The YAML configuration as a dict, checked: one-line :class:`ConfigError` on any fault.

    Parameters
    ----------
    path
        The file; default :func:`default_config_file`. A missing file is an error only when
        it was given explicitly (``$ANISOSCREEN_CONFIG``, ``--config`` or ``path``).
    """
    import yaml

    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    path = path or default_config_file()
    if not path.exists():
        if explicit:
            raise ConfigError(
                f"config file {path} does not exist; create it, or unset {CONFIG_ENV} "
                "to use the defaults"
            )
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(
            f"config file {path} is not valid YAML ({problem}{where}); fix it, or point "
            f"{CONFIG_ENV} at another file"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of settings (key: value), "
            f"not a {type(data).__name__}"
        )
    known = set(AnisoscreenSettings.model_fields)
    for key in data:
        if key not in known:
            raise ConfigError(
                f"config file {path}: unknown key {key!r}; known keys: {', '.join(sorted(known))}"
            )
    return data


DEFAULT_MODEL = "anisonet-mp-v3"
"""The electronic model used when none is named (the one the package ships as default)."""
DEFAULT_IONIC_MODEL = "anisonet-mp-ionic-v1"
"""The ionic model the package ships (for ``--ionic-model`` and the FOM)."""
DEFAULT_BORN_MODEL = "anisonet-mp-born"
"""The Born-charge model of the ionic refine stage's ``predicted`` charges (source checkout)."""


class ConfigFileSource(PydanticBaseSettingsSource):
    """The YAML configuration file as a settings source (checked by :func:`read_config_file`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file

    def __call__(self) -> dict[str, Any]:
        return read_config_file()


class AnisoscreenSettings(BaseSettings):
    """Configuration of stores, data locations, the default model and compute.

    Parameters
    ----------
    data_dir
        Folder for the embedded results store, caches and downloaded checkpoints.
    store
        Results store: ``"embedded"`` (indexed SQLite file under ``data_dir``; the default),
        ``"monty"`` (the legacy montydb folder; ``anisoscreen store migrate`` copies it over),
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
    server_timeout
        Seconds to wait for a MongoDB server before reporting it unreachable.
    mp_api_key
        Materials Project API key.
    """

    model_config = SettingsConfigDict(
        env_prefix="ANISOSCREEN_", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    store: str = "embedded"
    database: str = "anisoscreen"
    collection_prefix: str = ""
    shared: Path = Field(default_factory=_default_shared_dir)
    model: str = DEFAULT_MODEL
    ionic_model: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=64, ge=1)
    server_timeout: float = Field(default=5.0, gt=0)
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
        return (init_settings, env_settings, ConfigFileSource(settings_cls))

    @property
    def embedded_store_path(self) -> Path:
        """SQLite file of the embedded results store."""
        return self.data_dir / f"{self.database}.sqlite"

    @property
    def monty_store_path(self) -> Path:
        """Folder of the legacy montydb results store."""
        return self.data_dir / "store"

    @property
    def store_location(self) -> str:
        """Where the results store is, printable: never a password (see :func:`redact_store`)."""
        spec = self.store.strip()
        if spec == "embedded":
            return f"{self.embedded_store_path} (embedded SQLite)"
        if spec == "monty":
            return f"{self.monty_store_path} (embedded montydb, legacy)"
        return redact_store(spec)

    def describe(self) -> dict[str, Any]:
        """A printable summary that never contains the API key or a store password."""
        return {
            "data_dir": str(self.data_dir),
            "store": redact_store(self.store),
            "database": self.database,
            "shared": str(self.shared),
            "model": self.model,
            "ionic_model": self.ionic_model,
            "device": self.device,
            "batch_size": self.batch_size,
            "server_timeout": self.server_timeout,
            "mp_api_key": "set" if self.mp_api_key else "not set",
            "config_file": str(default_config_file()),
        }


def redact_store(spec: str) -> str:
    """A store setting fit to print: a ``mongodb://`` URI loses its credentials and options.

    ``mongodb://user:pw@host:27017/db?authSource=admin`` -> ``mongodb://***@host:27017/db``
    (the query string can hold secrets too, e.g. ``tlsCertificateKeyFilePassword``). Other
    settings (``monty``, ``memory``, a store file path) are returned unchanged.
    """
    spec = spec.strip()
    scheme, sep, rest = spec.partition("://")
    if not sep or not scheme.lower().startswith("mongodb"):
        return spec
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    userinfo, at, hosts = rest.rpartition("@")
    return f"{scheme}://***@{hosts}" if at else f"{scheme}://{hosts}"


def get_settings(**overrides: Any) -> AnisoscreenSettings:
    """Build settings; ``None`` overrides are ignored so CLI flags left unset fall through.

    Raises
    ------
    ConfigError
        One line naming the first invalid key and where its value came from.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return AnisoscreenSettings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe_invalid(exc, given)) from None


def _describe_invalid(exc: ValidationError, given: dict[str, Any]) -> str:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else "?"
    env = f"ANISOSCREEN_{key.upper()}"
    if key in given:
        where = f"the --{key.replace('_', '-')} option"
    elif env in os.environ:
        where = f"the environment variable {env}"
    else:
        where = f"the config file {default_config_file()}"
    value = "***" if key == "mp_api_key" else repr(error.get("input"))
    return f"invalid setting {key!r} = {value} from {where}: {error['msg']}"


def store_overrides(settings: AnisoscreenSettings) -> dict[str, Any]:
    """The settings a job needs to rebuild the same results store (JSON-serialisable)."""
    return {
        "store": settings.store,
        "data_dir": str(settings.data_dir),
        "database": settings.database,
        "collection_prefix": settings.collection_prefix,
    }

"""maggma stores and the jobflow ``JobStore``, built from one settings object.

``AnisoscreenSettings.store`` selects the backend:

``embedded`` (default)
    :class:`~anisoscreen.store.sqlite.SQLiteStore`: one SQLite file with indexes,
    ``<data_dir>/<database>.sqlite``; no server.
``monty``
    the legacy montydb folder ``<data_dir>/store`` (no indexes); ``anisoscreen store migrate``
    copies it into the embedded engine.
``memory``
    maggma ``MemoryStore`` (mongomock) for tests; gone when the process ends.
``mongodb://...`` / ``mongodb+srv://...``
    a MongoDB server (maggma ``MongoURIStore``), for production.
path to ``.yaml`` / ``.json``
    any serialised maggma store (``@module``/``@class`` plus its arguments); its
    ``collection_name`` is replaced per collection.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from maggma.core import Store
from maggma.stores import MemoryStore, MongoStore, MongoURIStore, MontyStore

from anisoscreen.errors import ConfigError, StoreError
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store.layout import INDEXES, JOB_COLLECTION, JOB_DATA_COLLECTION, store_key
from anisoscreen.store.lock import StoreLock
from anisoscreen.store.sqlite import SQLiteStore, is_writable

__all__ = [
    "EMBEDDED",
    "LegacyMontyStore",
    "StoreConfigError",
    "build_job_store",
    "build_store",
    "mongo_store",
]

EMBEDDED = "embedded"
"""The settings value of the default embedded engine."""


class StoreConfigError(ConfigError):
    """The store specification cannot be turned into a maggma store."""


def _load_store_template(path: Path) -> dict[str, Any]:
    from monty.serialization import loadfn

    if not path.is_file():
        raise StoreConfigError(f"store file {path} does not exist")
    try:
        template = loadfn(path, cls=None)
    except Exception as exc:  # YAML/JSON parser errors of many types
        reason = " ".join(str(exc).split())[:200]
        raise StoreConfigError(
            f"store file {path} cannot be parsed ({type(exc).__name__}: {reason})"
        ) from exc
    if not isinstance(template, dict) or "@class" not in template:
        raise StoreConfigError(
            f"{path} must hold one serialised maggma store with '@module' and '@class' keys"
        )
    return template


def mongo_store(
    uri: str, collection_name: str, database: str, server_timeout: float = 5.0
) -> Store:
    """A MongoDB store from a ``mongodb://`` URI, on any supported maggma version.

    maggma >= 0.77 merged ``MongoURIStore`` (now deprecated) into ``MongoStore.from_uri``. An
    unreachable server fails after ``server_timeout`` seconds instead of pymongo's 30.
    """
    timeout_ms = int(server_timeout * 1000)
    client_kwargs = {"serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms}
    if hasattr(MongoStore, "from_uri"):
        return MongoStore.from_uri(
            uri,
            collection_name=collection_name,
            database=database,
            mongoclient_kwargs=client_kwargs,
        )
    return MongoURIStore(uri, collection_name, database=database, mongoclient_kwargs=client_kwargs)


class LegacyMontyStore(MontyStore):
    """The legacy montydb store, whose ``connect`` holds the store lock where it can.

    montydb rewrites its storage configuration file on every connect; a process that reads it
    at that moment finds it empty and fails ("Empty module name"). Connecting under the same
    lock as the writers makes concurrent processes safe; a read-only folder is read unlocked.
    """

    def connect(self, force_reset: bool = False) -> None:
        """Connect while holding the store's lock (unless the folder is read-only)."""
        if not is_writable(Path(self.database_path)):
            super().connect(force_reset=force_reset)
            return
        with StoreLock(self.database_path).hold():
            super().connect(force_reset=force_reset)


def _create_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the embedded store folder {path}: {exc.strerror}; "
            "choose another --data-dir (ANISOSCREEN_DATA_DIR)"
        ) from exc


def build_store(settings: AnisoscreenSettings, collection: str) -> Store:
    """Build (but do not connect) the maggma store for one collection."""
    name = settings.collection_prefix + collection
    spec = settings.store.strip()
    if spec == EMBEDDED:
        return SQLiteStore(
            str(settings.embedded_store_path),
            name,
            key=store_key(collection)[0],
            unique_key=store_key(collection),
            indexes=INDEXES.get(collection, []),
        )
    if spec == "monty":
        path = settings.monty_store_path
        if is_writable(path):
            _create_folder(path)
        return LegacyMontyStore(name, database_path=str(path), database_name=settings.database)
    if spec == "memory":
        return MemoryStore(name)
    if spec.startswith(("mongodb://", "mongodb+srv://")):
        return mongo_store(spec, name, settings.database, settings.server_timeout)
    if spec.endswith((".yaml", ".yml", ".json")):
        from monty.json import MontyDecoder

        template = copy.deepcopy(_load_store_template(Path(spec).expanduser()))
        template["collection_name"] = name
        store = MontyDecoder().process_decoded(template)
        if not isinstance(store, Store):
            raise StoreConfigError(f"{spec} does not describe a maggma Store")
        return store
    raise StoreConfigError(
        f"unknown store {spec!r}: use 'embedded', 'monty', 'memory', a mongodb:// URI or a "
        ".yaml/.json file"
    )


def build_job_store(settings: AnisoscreenSettings | None = None):
    """A jobflow ``JobStore`` on the same backend, with atomate2's ``data`` additional store."""
    from jobflow import JobStore

    settings = settings or get_settings()
    return JobStore(
        build_store(settings, JOB_COLLECTION),
        additional_stores={"data": build_store(settings, JOB_DATA_COLLECTION)},
    )

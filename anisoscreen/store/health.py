"""Fail-fast checks of a results store: reachable, not corrupt, keys unique.

Each problem becomes one :class:`~anisoscreen.errors.StoreError` line that names the store
and says what to do, instead of a driver traceback after a long wait:

- a MongoDB server that does not answer within ``server_timeout`` seconds (5 by default);
- an embedded SQLite file that fails SQLite's ``quick_check`` ("corrupt", with a recovery
  hint), told apart from one that is only read-only, locked by another writer or on a full
  disk (:func:`embedded_error`);
- on MongoDB, the unique index on each collection's store key (created by the package, so a
  re-run or a concurrent writer can never duplicate a document).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from maggma.core import Store
from maggma.stores import MongoStore, MontyStore

from anisoscreen.errors import StoreError

__all__ = [
    "UNIQUE_INDEX_NAME",
    "check_embedded_file",
    "corrupt_error",
    "embedded_collection_file",
    "embedded_error",
    "ensure_unique_index",
    "ping_mongo",
]

UNIQUE_INDEX_NAME = "anisoscreen_store_key"
"""Name of the unique index the package creates on each collection's store key."""


def embedded_collection_file(store: MontyStore) -> Path:
    """The SQLite file that holds one (legacy) montydb collection."""
    return Path(store.database_path) / store.database_name / f"{store.collection_name}.collection"


def _recovery_hint(path: Path) -> str:
    return (
        f"move it aside (mv {path} {path}.corrupt) and re-run to rebuild it, "
        "or restore it from a backup"
    )


_CORRUPT = ("malformed", "not a database", "file is encrypted", "corrupt")


def corrupt_error(path: Path, reason: str) -> StoreError:
    """The one line for a corrupt embedded store file, with what to do."""
    reason = " ".join(reason.split())[:200]
    return StoreError(
        f"the embedded store file {path} is corrupt ({reason}); {_recovery_hint(path)}"
    )


def embedded_error(path: Path, exc: sqlite3.Error, timeout: float) -> StoreError:
    """One line for an SQLite error of the embedded store ``path``, by what it means."""
    text = str(exc)
    lowered = text.lower()
    if any(word in lowered for word in _CORRUPT):
        return corrupt_error(path, text)
    if "readonly" in lowered or "read-only" in lowered:
        return StoreError(
            f"the embedded store {path} is read-only ({text}): reading works, but this command "
            "writes; run it on a writable copy or choose another --data-dir"
        )
    if "locked" in lowered or "busy" in lowered:
        return StoreError(
            f"the embedded store {path} stayed locked by another writer for {timeout:.0f} s; "
            "wait for it to finish and re-run"
        )
    if "full" in lowered or "disk i/o" in lowered:
        return StoreError(
            f"cannot write the embedded store {path} ({text}); free disk space and re-run "
            "(what was stored before stays stored)"
        )
    return StoreError(f"the embedded store {path} cannot be used ({text})")


def check_embedded_file(path: Path) -> None:
    """Raise :class:`StoreError` if the legacy montydb SQLite file ``path`` is corrupt.

    A file that cannot be opened for reading at all (a read-only folder) is left to the
    reader, which reports what fails; only a file SQLite reads and rejects is "corrupt".
    """
    if not path.is_file():
        return
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchone()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "unable to open" in str(exc):
            return
        raise StoreError(
            f"the embedded store file {path} is corrupt ({exc}); {_recovery_hint(path)}"
        ) from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"the embedded store file {path} is corrupt ({exc}); {_recovery_hint(path)}"
        ) from exc
    if not verdict or verdict[0] != "ok":
        raise StoreError(
            f"the embedded store file {path} is corrupt ({verdict[0] if verdict else 'no answer'})"
            f"; {_recovery_hint(path)}"
        )


def _location(store: MongoStore) -> str:
    client = store._collection.database.client
    servers = client.topology_description.server_descriptions()
    nodes = sorted(f"{host}:{port}" for host, port in servers)
    return ", ".join(nodes) or "the configured MongoDB"


def ping_mongo(store: MongoStore, timeout: float) -> None:
    """Raise :class:`StoreError` unless the store's MongoDB server answers within ``timeout``."""
    from pymongo.errors import PyMongoError

    try:
        store._collection.database.client.admin.command("ping")
    except PyMongoError as exc:
        reason = str(exc).split(",")[0].split(" (configured timeouts")[0]
        raise StoreError(
            f"MongoDB at {_location(store)} did not answer within {timeout:g} s ({reason}); "
            "check that the server runs and the store URI, or raise ANISOSCREEN_SERVER_TIMEOUT"
        ) from exc


def ensure_unique_index(store: Store, key: Iterable[str]) -> None:
    """Create the unique index on ``key`` (MongoDB and mongomock stores; montydb has none)."""
    if isinstance(store, MontyStore) or not isinstance(store, MongoStore):
        return
    from pymongo.errors import OperationFailure

    fields = [(name, 1) for name in key]
    try:
        store._collection.create_index(fields, unique=True, name=UNIQUE_INDEX_NAME)
    except OperationFailure as exc:
        raise StoreError(
            f"cannot create the unique index on {[f for f, _ in fields]} of collection "
            f"{store.collection_name} ({exc}); it holds duplicate keys: remove the duplicates, "
            "then re-run"
        ) from exc

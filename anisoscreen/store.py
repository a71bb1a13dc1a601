"""Results stores and the jobflow ``JobStore``, all built from one settings object.

``AnisoscreenSettings.store`` selects the backend:

``monty`` (default)
    an embedded, persistent montydb (SQLite) database under ``<data_dir>/store``; no server.
``memory``
    maggma ``MemoryStore`` (mongomock) for tests; gone when the process ends.
``mongodb://...`` / ``mongodb+srv://...``
    a MongoDB server (maggma ``MongoURIStore``), for production.
path to ``.yaml`` / ``.json``
    any serialised maggma store (``@module``/``@class`` plus its arguments); its
    ``collection_name`` is replaced per collection.

Every write is an upsert on the document's ``STORE_KEY`` (``material_id`` + ``model`` for
predictions, ``material_id`` + ``job_uuid`` for validations), so a re-run never duplicates.
Writes go in chunks of at most ``WRITE_CHUNK`` documents, each chunk one atomic write (a
bulk write on MongoDB, one SQLite transaction on the embedded store), so an interrupted
write loses at most the chunk in flight and leaves earlier records intact.

montydb has no indexes: every keyed lookup scans the whole collection, so maggma's
one-``replace_one``-per-document update is quadratic in the collection size. On the
embedded store the upsert therefore reads the existing keys (and a fingerprint of each
document's content) in **one** scan per call, inserts the new documents with ``insert_many``,
rewrites only documents whose content changed (by ``_id``, no scan) and skips the rest.

Concurrent writers: on the embedded store every read-modify-write chunk runs under a file lock
next to the montydb folder (:class:`~anisoscreen.store_lock.StoreLock`); on MongoDB the package
creates a unique index on each collection's store key, so the server itself refuses a second
copy. Connecting checks the store first (:mod:`anisoscreen.store_health`): an unreachable
MongoDB fails after ``server_timeout`` seconds and a corrupt embedded file is named with a
recovery hint, each as one line.
"""

from __future__ import annotations

import copy
import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import bson
from maggma.core import Store
from maggma.stores import MemoryStore, MongoStore, MongoURIStore, MontyStore

from anisoscreen.errors import ConfigError, StoreError
from anisoscreen.schemas import (
    CampaignDoc,
    CandidateDoc,
    PredictionDoc,
    ScreeningRunDoc,
    ValidationDoc,
)
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store_health import (
    check_embedded_file,
    embedded_collection_file,
    ensure_unique_index,
    ping_mongo,
)
from anisoscreen.store_lock import StoreLock

__all__ = [
    "COLLECTIONS",
    "EmbeddedStore",
    "ResultsStore",
    "StoreConfigError",
    "build_job_store",
    "build_store",
    "mongo_store",
    "open_results",
]

COLLECTIONS: dict[str, type] = {
    "candidates": CandidateDoc,
    "predictions": PredictionDoc,
    "validations": ValidationDoc,
    "runs": ScreeningRunDoc,
    "campaigns": CampaignDoc,
}
"""Result collections and the document each one holds."""

WRITE_CHUNK = 500
"""Most documents written in one atomic write."""

JOB_COLLECTION = "jobs"
JOB_DATA_COLLECTION = "jobs_data"

DocT = TypeVar("DocT")


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


class EmbeddedStore(MontyStore):
    """montydb store whose ``connect`` holds the store lock.

    montydb rewrites its storage configuration file on every connect; a process that reads it
    at that moment finds it empty and fails ("Empty module name"). Connecting under the same
    lock as the writers makes concurrent processes safe.
    """

    def connect(self, force_reset: bool = False) -> None:
        """Connect while holding the embedded store's lock."""
        with StoreLock(self.database_path).hold():
            super().connect(force_reset=force_reset)


def build_store(settings: AnisoscreenSettings, collection: str) -> Store:
    """Build (but do not connect) the maggma store for one collection."""
    name = settings.collection_prefix + collection
    spec = settings.store.strip()
    if spec == "monty":
        path = settings.embedded_store_path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the embedded store folder {path}: {exc.strerror}; "
                "choose another --data-dir (ANISOSCREEN_DATA_DIR)"
            ) from exc
        return EmbeddedStore(name, database_path=str(path), database_name=settings.database)
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
        f"unknown store {spec!r}: use 'monty', 'memory', a mongodb:// URI or a .yaml/.json file"
    )


def build_job_store(settings: AnisoscreenSettings | None = None):
    """A jobflow ``JobStore`` on the same backend, with atomate2's ``data`` additional store."""
    from jobflow import JobStore

    settings = settings or get_settings()
    return JobStore(
        build_store(settings, JOB_COLLECTION),
        additional_stores={"data": build_store(settings, JOB_DATA_COLLECTION)},
    )


BOOKKEEPING_FIELDS = frozenset({"_id", "last_updated", "created_at"})
"""Fields that do not make a document's content differ (timestamps, Mongo's ``_id``)."""


def _content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in BOOKKEEPING_FIELDS}


def _matches_in(value: Any, values: set) -> bool:
    """Mongo's ``$in``: a scalar is one of ``values``; an array shares an element with them."""
    if isinstance(value, list):
        return any(_matches_in(v, values) for v in value)
    try:
        return value in values
    except TypeError:  # unhashable (a sub-document) never equals a listed scalar
        return False


def _record_key(record: dict[str, Any], key: list[str]) -> tuple:
    return tuple(record.get(field) for field in key)


def _fingerprint(record: dict[str, Any]) -> bytes:
    return hashlib.blake2b(bson.encode(_content(record)), digest_size=16).digest()


def _insert_new(collection: Any, records: list[dict[str, Any]]) -> None:
    """Insert records whose keys are not stored yet, in one transaction; sets each ``_id``.

    montydb's ``insert_many`` on SQLite reads every stored ``_id`` and looks each new one up in
    that *list*, so a chunk costs O(stored documents x chunk) and filling a collection is
    quadratic (1,000 documents a minute at 55,000 stored). The upserter already knows the
    records are new, so on SQLite they go straight to the storage layer's ``executemany``.
    """
    from montydb.storage.sqlite import SQLiteCollection
    from montydb.types import bson as monty_bson

    target = collection._storage
    for component in collection._components:  # what montydb's storage delegation builds
        target = target.contractor_cls(target, component)
    if not isinstance(target, SQLiteCollection):
        collection.insert_many(records)
        return
    if not target._database.collection_exists(target._name):
        target._database.collection_create(target._name)
    rows = []
    for record in records:
        record.setdefault("_id", monty_bson.ObjectId())
        rows.append((monty_bson.id_encode(record["_id"]), target._encode_doc(record, True)))
    target._conn.write_many(target._col_path, rows, target.wconcern)


class _EmbeddedUpserter:
    """Upserts into one montydb collection, scanning it only when another writer wrote.

    The first write reads every stored document once and keeps ``key -> (_id, created_at,
    content fingerprint)``; later writes of the same :class:`ResultsStore` use and update that
    index as long as the store's write generation shows no other writer in between (the
    descriptor stage stores every few structures: a scan per write made it wait on the store).
    A failed write drops the index, so the next one reads the collection again.
    """

    def __init__(self, store: MontyStore, key: list[str]) -> None:
        self.collection = store._collection
        self.key = key
        self.lock = StoreLock(store.database_path)
        self._index: dict[tuple, tuple[Any, Any, bytes]] | None = None
        self._generation = -1

    def _load_index(self, generation: int) -> dict[tuple, tuple[Any, Any, bytes]]:
        if self._index is None or generation != self._generation:  # another process wrote
            self._index = {
                _record_key(stored, self.key): (
                    stored["_id"],
                    stored.get("created_at"),
                    _fingerprint(stored),
                )
                for stored in self.collection.find({})
            }
        return self._index

    def write(
        self,
        records: list[dict[str, Any]],
        precondition: Callable[[Any], bool] | None = None,
    ) -> bool:
        """Upsert ``records`` as one locked read-modify-write; ``False`` if not written.

        ``precondition`` (called with the collection, under the lock) may refuse the write.
        """
        with self.lock.hold() as generation:
            if precondition is not None and not precondition(self.collection):
                return False
            try:
                self._write(records, self._load_index(generation))
            except BaseException:
                self._index = None  # it may be ahead of or behind what was stored
                raise
            self._generation = self.lock.advance()
        return True

    def _write(self, records: list[dict[str, Any]], index: dict) -> None:
        new: list[tuple[dict[str, Any], tuple, bytes]] = []
        changed: list[tuple[dict[str, Any], tuple, bytes]] = []
        for record in records:
            fingerprint = _fingerprint(record)
            record_key = _record_key(record, self.key)
            stored = index.get(record_key)
            if stored is None:
                new.append((record, record_key, fingerprint))
            elif stored[2] != fingerprint:
                kept = {"_id": stored[0]}
                if stored[1] is not None and "created_at" in record:
                    kept["created_at"] = stored[1]
                changed.append(({**record, **kept}, record_key, fingerprint))
        if new:
            _insert_new(self.collection, [r for r, _, _ in new])  # gives each record its _id
        if changed:
            # replace by _id through montydb's storage layer: one transaction, no scan
            self.collection._storage.update_many(self.collection, [r for r, _, _ in changed])
        for record, record_key, fingerprint in new + changed:
            index[record_key] = (record["_id"], record.get("created_at"), fingerprint)


class ResultsStore:
    """The result collections of one backend, with typed upserts and queries.

    Parameters
    ----------
    settings
        Where the stores live; defaults to :func:`anisoscreen.settings.get_settings`.
    stores
        Pre-built maggma stores by collection name (e.g. ``MemoryStore`` in tests).
    """

    def __init__(
        self,
        settings: AnisoscreenSettings | None = None,
        stores: dict[str, Store] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self._stores: dict[str, Store] = dict(stores or {})
        self._connected: set[str] = set()
        self._embedded: dict[str, _EmbeddedUpserter] = {}

    # -- access -----------------------------------------------------------------------
    def store(self, collection: str) -> Store:
        """The connected maggma store of ``collection``."""
        if collection not in COLLECTIONS:
            raise KeyError(f"unknown collection {collection!r}; known: {sorted(COLLECTIONS)}")
        if collection not in self._stores:
            self._stores[collection] = build_store(self.settings, collection)
        if collection not in self._connected:
            store = self._stores[collection]
            if isinstance(store, MontyStore):
                check_embedded_file(embedded_collection_file(store))
            try:
                store.connect()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot open the embedded store {self.location}: {exc}") from exc
            if isinstance(store, MongoStore) and not isinstance(store, MemoryStore):
                ping_mongo(store, self.settings.server_timeout)  # (MontyStore is a MemoryStore)
            ensure_unique_index(store, COLLECTIONS[collection].STORE_KEY)  # type: ignore[attr-defined]
            self._connected.add(collection)
        return self._stores[collection]

    def check(self) -> None:
        """Connect every collection now, so an unusable store fails before any work starts.

        Raises
        ------
        StoreError
            The store is unreachable or corrupt (one line with what to do).
        """
        for collection in COLLECTIONS:
            self.store(collection)
        if self.settings.store.strip() == "monty":
            folder = self.settings.embedded_store_path / self.settings.database
            for name in (JOB_COLLECTION, JOB_DATA_COLLECTION):
                prefixed = self.settings.collection_prefix + name
                check_embedded_file(folder / f"{prefixed}.collection")

    def revision(self) -> int | None:
        """The embedded store's write generation; ``None`` on backends that keep none.

        Every :meth:`upsert` on the embedded store counts one write under the store lock
        (:class:`~anisoscreen.store_lock.StoreLock`), so an unchanged number means unchanged
        collections; reading it costs one small file read. MongoDB and memory stores keep no
        counter: a reader must re-read them to see changes.
        """
        store = self.store("predictions")
        if not isinstance(store, MontyStore):
            return None
        return StoreLock(store.database_path).generation()

    @staticmethod
    def collection_of(doc_cls: type) -> str:
        """Collection name that holds documents of ``doc_cls``."""
        for name, cls in COLLECTIONS.items():
            if cls is doc_cls:
                return name
        raise KeyError(f"{doc_cls.__name__} has no collection")

    @property
    def location(self) -> str:
        """Human-readable location of the backend (credentials redacted)."""
        return self.settings.store_location

    # -- writes -----------------------------------------------------------------------
    def upsert(self, docs: Iterable[Any]) -> int:
        """Insert or replace documents on their ``STORE_KEY``; returns how many were written.

        Documents are grouped by collection and written in atomic chunks of ``WRITE_CHUNK``
        as the iterable yields them; if the iterable raises, the documents it already gave
        are written before the exception propagates. A repeated call replaces rather than
        duplicates.
        """
        pending: dict[str, tuple[list[str], list[dict[str, Any]]]] = {}
        count = 0

        def flush(collection: str) -> None:
            nonlocal count
            key, records = pending.pop(collection)
            # one document per key (the last, as with sequential upserts): a bulk write
            # that is unordered may otherwise apply repeated keys in any order
            records = list({_record_key(r, key): r for r in records}.values())
            store = self.store(collection)
            if isinstance(store, MontyStore):
                if collection not in self._embedded:
                    self._embedded[collection] = _EmbeddedUpserter(store, key)
                self._embedded[collection].write(records)
            else:
                store.update(records, key=key)
            count += len(records)

        try:
            for doc in docs:
                collection = self.collection_of(type(doc))
                key, records = pending.setdefault(collection, (list(doc.STORE_KEY), []))
                records.append(doc.store_dict())
                if len(records) >= WRITE_CHUNK:
                    flush(collection)
        finally:
            for collection in list(pending):
                flush(collection)
        return count

    def replace_if(self, doc: Any, field: str, expected: Any) -> bool:
        """Compare-and-set: write ``doc`` only if its stored version has ``field == expected``.

        ``expected=None`` means "only if no document has this key yet". A stored document
        without ``field`` counts as ``field == 0``. Atomic on every backend: a filter on the
        key and ``field`` on MongoDB (and mongomock), the store lock on the embedded store.
        Returns whether ``doc`` was written.
        """
        collection = self.collection_of(type(doc))
        key = list(doc.STORE_KEY)
        record = doc.store_dict()
        match = {name: record.get(name) for name in key}
        store = self.store(collection)
        if isinstance(store, MontyStore):
            if collection not in self._embedded:
                self._embedded[collection] = _EmbeddedUpserter(store, key)

            def unchanged(stored_collection: Any) -> bool:
                stored = stored_collection.find_one(match)
                if expected is None or stored is None:
                    return expected is None and stored is None
                return stored.get(field, 0) == expected

            return self._embedded[collection].write([record], precondition=unchanged)
        if isinstance(store, MongoStore):
            from pymongo.errors import DuplicateKeyError

            if expected is None:
                try:
                    store._collection.insert_one(record)
                except DuplicateKeyError:
                    return False
                return True
            wanted = {"$in": [0, None]} if expected == 0 else expected
            replaced = store._collection.replace_one({**match, field: wanted}, record)
            return replaced.matched_count == 1
        stored = next(iter(store.query(criteria=match, limit=1)), None)  # no atomic primitive
        if (stored is None) != (expected is None) or (
            stored is not None and stored.get(field, 0) != expected
        ):
            return False
        store.update([record], key=key)
        return True

    # -- reads ------------------------------------------------------------------------
    def records(
        self,
        collection: str,
        criteria: dict[str, Any] | None = None,
        properties: list[str] | None = None,
        sort: dict[str, int] | None = None,
        limit: int = 0,
    ) -> Iterator[dict[str, Any]]:
        """Raw records of ``collection`` matching a Mongo-style ``criteria``, streamed.

        On the embedded store, top-level ``{"field": {"$in": [...]}}`` conditions are applied
        here with a set lookup: montydb compares every record against every listed value,
        which turns a query for a few thousand ids into millions of Python comparisons.
        """
        store = self.store(collection)
        criteria = dict(criteria or {})
        wanted: dict[str, set] = {}
        if isinstance(store, MontyStore):
            for name, condition in list(criteria.items()):
                if isinstance(condition, dict) and set(condition) == {"$in"}:
                    values = condition["$in"]
                    if all(isinstance(v, str | int | float | bool | type(None)) for v in values):
                        wanted[name] = set(values)
                        del criteria[name]
        if any(not values for values in wanted.values()):
            return  # an empty $in matches nothing: no need to read the collection
        if properties is not None and wanted:
            properties = sorted(set(properties) | set(wanted))
        cursor = store.query(
            criteria=criteria,
            properties=properties,
            sort=sort,
            limit=0 if wanted else limit,
        )
        returned = 0
        for record in cursor:
            if all(_matches_in(record.get(name), values) for name, values in wanted.items()):
                yield record
                returned += 1
                if limit and returned >= limit:
                    return

    def query(
        self,
        doc_cls: type[DocT],
        criteria: dict[str, Any] | None = None,
        sort: dict[str, int] | None = None,
        limit: int = 0,
    ) -> list[DocT]:
        """Documents of ``doc_cls`` matching a Mongo-style ``criteria``."""
        records = self.records(self.collection_of(doc_cls), criteria, sort=sort, limit=limit)
        return [doc_cls.from_store(record) for record in records]  # type: ignore[attr-defined]

    def keys(self, doc_cls: type, field: str, criteria: dict[str, Any] | None = None) -> set:
        """Distinct values of ``field`` (e.g. the material ids already predicted)."""
        records = self.records(self.collection_of(doc_cls), criteria, properties=[field])
        return {r[field] for r in records if field in r}

    def count(self, collection: str, criteria: dict[str, Any] | None = None) -> int:
        """Number of documents in ``collection``."""
        return self.store(collection).count(criteria or {})

    def counts(self) -> dict[str, int]:
        """Document count of every result collection."""
        return {name: self.count(name) for name in COLLECTIONS}

    def close(self) -> None:
        """Close every connected store."""
        self._embedded.clear()
        for name in list(self._connected):
            try:
                self._stores[name].close()
            finally:
                self._connected.discard(name)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def open_results(settings: AnisoscreenSettings | None = None) -> Iterator[ResultsStore]:
    """Context manager that opens the configured results store and closes it afterwards."""
    results = ResultsStore(settings)
    try:
        yield results
    finally:
        results.close()

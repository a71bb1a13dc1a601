"""The result collections of one backend, with typed upserts and queries.

Every write is an upsert on the document's ``STORE_KEY`` (``material_id`` + ``model`` for
predictions, ``material_id`` + ``job_uuid`` for validations), so a re-run never duplicates.
Writes go in chunks of at most ``WRITE_CHUNK`` documents, each chunk one atomic write (one
SQLite transaction on the embedded store, a bulk write on MongoDB), so an interrupted write
loses at most the chunk in flight and leaves earlier records intact. On the embedded store an
unchanged document costs one index lookup and its hash (nothing is written); on MongoDB the
package creates a unique index on each collection's store key, so the server itself refuses a
second copy. Connecting checks the store first (:mod:`anisoscreen.store.health`).
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from maggma.core import Store
from maggma.stores import MemoryStore, MongoStore, MontyStore

from anisoscreen.errors import AnisoscreenWarning, StoreError
from anisoscreen.settings import AnisoscreenSettings, get_settings
from anisoscreen.store.backends import build_store
from anisoscreen.store.codec import key_text
from anisoscreen.store.health import (
    check_embedded_file,
    embedded_collection_file,
    ensure_unique_index,
    ping_mongo,
)
from anisoscreen.store.layout import COLLECTIONS, JOB_COLLECTION, JOB_DATA_COLLECTION
from anisoscreen.store.lock import StoreLock
from anisoscreen.store.sqlite import SQLiteStore

__all__ = ["WRITE_CHUNK", "ResultsStore", "open_results"]

WRITE_CHUNK = 500
"""Most documents written in one atomic write."""

DocT = TypeVar("DocT")


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

    # -- access -----------------------------------------------------------------------
    def store(self, collection: str) -> Store:
        """The connected maggma store of ``collection``."""
        if collection not in COLLECTIONS:
            raise KeyError(f"unknown collection {collection!r}; known: {sorted(COLLECTIONS)}")
        if collection not in self._stores:
            self._stores[collection] = build_store(self.settings, collection)
        if collection not in self._connected:
            store = self._stores[collection]
            if isinstance(store, SQLiteStore) and not self._connected:
                self._hint_migration(store)
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

    def _hint_migration(self, store: SQLiteStore) -> None:
        """Warn once when a new embedded store sits beside a montydb store with data."""
        legacy = self.settings.monty_store_path / self.settings.database
        if Path(store.path).exists() or not any(legacy.glob("*.collection")):
            return
        warnings.warn(
            f"the results are now kept in {store.path}; the montydb store {legacy.parent} "
            "is not read any more: copy it with `anisoscreen store migrate` (or use --store monty)",
            AnisoscreenWarning,
            stacklevel=3,
        )

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
            folder = self.settings.monty_store_path / self.settings.database
            for name in (JOB_COLLECTION, JOB_DATA_COLLECTION):
                prefixed = self.settings.collection_prefix + name
                check_embedded_file(folder / f"{prefixed}.collection")

    @property
    def read_only(self) -> bool:
        """Whether the embedded store could only be opened for reading."""
        store = self.store("predictions")
        return isinstance(store, SQLiteStore) and store.read_only

    def revision(self) -> int | None:
        """The embedded store's write generation; ``None`` on backends that keep none.

        Every write that changes the embedded store counts one generation in the same
        transaction, so an unchanged number means unchanged collections; reading it is one
        indexed row. MongoDB and memory stores keep no counter: a reader must re-read them.
        """
        store = self.store("predictions")
        if isinstance(store, SQLiteStore):
            return store.generation()
        if isinstance(store, MontyStore):
            return StoreLock(store.database_path).generation()
        return None

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
        duplicates, and an unchanged document is not rewritten.
        """
        pending: dict[str, tuple[list[str], list[dict[str, Any]]]] = {}
        count = 0

        def flush(collection: str) -> None:
            nonlocal count
            key, records = pending.pop(collection)
            count += self._write(collection, key, records)

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

    def upsert_records(self, collection: str, records: Iterable[dict[str, Any]]) -> int:
        """:meth:`upsert` of ready store records (``store_dict`` output) of ``collection``."""
        key = list(COLLECTIONS[collection].STORE_KEY)  # type: ignore[attr-defined]
        count = 0
        chunk: list[dict[str, Any]] = []
        for record in records:
            chunk.append(record)
            if len(chunk) >= WRITE_CHUNK:
                count += self._write(collection, key, chunk)
                chunk = []
        if chunk:
            count += self._write(collection, key, chunk)
        return count

    def _write(self, collection: str, key: list[str], records: list[dict[str, Any]]) -> int:
        """Write one chunk of records atomically; an unchanged record is not rewritten."""
        # one document per key (the last, as with sequential upserts): a bulk write
        # that is unordered may otherwise apply repeated keys in any order
        records = list({key_text(r, key): r for r in records}.values())
        store = self.store(collection)
        if isinstance(store, SQLiteStore):
            store.upsert_records(records)
        elif isinstance(store, MontyStore):  # legacy: no unique index, so lock the writers
            lock = StoreLock(store.database_path)
            with lock.hold():
                store.update(records, key=key)
                lock.advance()
        else:
            store.update(records, key=key)
        return len(records)

    def replace_if(self, doc: Any, field: str, expected: Any) -> bool:
        """Compare-and-set: write ``doc`` only if its stored version has ``field == expected``.

        ``expected=None`` means "only if no document has this key yet". A stored document
        without ``field`` counts as ``field == 0``. Atomic on every backend: one write
        transaction on the embedded store, a filter on the key and ``field`` on MongoDB (and
        mongomock), the store lock on a legacy montydb store. Returns whether ``doc`` was
        written.
        """
        collection = self.collection_of(type(doc))
        key = list(doc.STORE_KEY)
        record = doc.store_dict()
        match = {name: record.get(name) for name in key}
        store = self.store(collection)
        if isinstance(store, SQLiteStore):
            return store.replace_if(record, field, expected)

        def unchanged() -> bool:
            stored = next(iter(store.query(criteria=match, limit=1)), None)
            if stored is None or expected is None:
                return (stored is None) == (expected is None)
            return (stored.get(field) or 0) == expected

        if isinstance(store, MontyStore):  # legacy: the store lock makes it atomic
            lock = StoreLock(store.database_path)
            with lock.hold():
                if not unchanged():
                    return False
                store.update([record], key=key)
                lock.advance()
            return True
        if isinstance(store, MongoStore):  # MongoDB, and mongomock for the memory store
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

        if not unchanged():  # any other maggma store: no atomic primitive
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
        """Raw records of ``collection`` matching a Mongo-style ``criteria``, streamed."""
        yield from self.store(collection).query(
            criteria=criteria or {},
            properties=properties,
            sort=dict(sort) if sort else None,  # ints are Sort values
            limit=limit,
        )

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

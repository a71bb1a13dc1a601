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
predictions, ``material_id`` + ``job_uuid`` for validations), one document per atomic write,
so a re-run never duplicates and an interrupted write leaves earlier records intact.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from maggma.core import Store
from maggma.stores import MemoryStore, MongoStore, MongoURIStore, MontyStore

from anisoscreen.errors import AnisoscreenError
from anisoscreen.schemas import CandidateDoc, PredictionDoc, ScreeningRunDoc, ValidationDoc
from anisoscreen.settings import AnisoscreenSettings, get_settings

__all__ = [
    "COLLECTIONS",
    "ResultsStore",
    "StoreConfigError",
    "build_job_store",
    "build_store",
    "open_results",
]

COLLECTIONS: dict[str, type] = {
    "candidates": CandidateDoc,
    "predictions": PredictionDoc,
    "validations": ValidationDoc,
    "runs": ScreeningRunDoc,
}
"""Result collections and the document each one holds."""

JOB_COLLECTION = "jobs"
JOB_DATA_COLLECTION = "jobs_data"

DocT = TypeVar("DocT")


class StoreConfigError(AnisoscreenError, ValueError):
    """The store specification cannot be turned into a maggma store."""


def _load_store_template(path: Path) -> dict[str, Any]:
    from monty.serialization import loadfn

    if not path.is_file():
        raise StoreConfigError(f"store file {path} does not exist")
    template = loadfn(path, cls=None)
    if not isinstance(template, dict) or "@class" not in template:
        raise StoreConfigError(
            f"{path} must hold one serialised maggma store with '@module' and '@class' keys"
        )
    return template


def build_store(settings: AnisoscreenSettings, collection: str) -> Store:
    """Build (but do not connect) the maggma store for one collection."""
    name = settings.collection_prefix + collection
    spec = settings.store.strip()
    if spec == "monty":
        path = settings.embedded_store_path
        path.mkdir(parents=True, exist_ok=True)
        return MontyStore(name, database_path=str(path), database_name=settings.database)
    if spec == "memory":
        return MemoryStore(name)
    if spec.startswith(("mongodb://", "mongodb+srv://")):
        if hasattr(MongoStore, "from_uri"):  # maggma >= 0.77
            return MongoStore.from_uri(spec, collection_name=name, database=settings.database)
        return MongoURIStore(spec, name, database=settings.database)
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
            self._stores[collection].connect()
            self._connected.add(collection)
        return self._stores[collection]

    @staticmethod
    def collection_of(doc_cls: type) -> str:
        """Collection name that holds documents of ``doc_cls``."""
        for name, cls in COLLECTIONS.items():
            if cls is doc_cls:
                return name
        raise KeyError(f"{doc_cls.__name__} has no collection")

    @property
    def location(self) -> str:
        """Human-readable location of the backend."""
        spec = self.settings.store
        if spec == "monty":
            return f"{self.settings.embedded_store_path} (embedded montydb)"
        if spec.startswith("mongodb"):
            head, _, tail = spec.partition("@")
            return ("mongodb://***@" + tail) if tail else head
        return spec

    # -- writes -----------------------------------------------------------------------
    def upsert(self, docs: Iterable[Any]) -> int:
        """Insert or replace documents on their ``STORE_KEY``; returns how many were written.

        Documents are written one at a time, so an interruption keeps every earlier
        write intact and a repeated call replaces rather than duplicates.
        """
        count = 0
        for doc in docs:
            collection = self.collection_of(type(doc))
            self.store(collection).update(doc.store_dict(), key=list(doc.STORE_KEY))
            count += 1
        return count

    # -- reads ------------------------------------------------------------------------
    def query(
        self,
        doc_cls: type[DocT],
        criteria: dict[str, Any] | None = None,
        sort: dict[str, int] | None = None,
        limit: int = 0,
    ) -> list[DocT]:
        """Documents of ``doc_cls`` matching a Mongo-style ``criteria``."""
        store = self.store(self.collection_of(doc_cls))
        records = store.query(criteria=criteria or {}, sort=sort, limit=limit)
        return [doc_cls.from_store(record) for record in records]  # type: ignore[attr-defined]

    def keys(self, doc_cls: type, field: str, criteria: dict[str, Any] | None = None) -> set:
        """Distinct values of ``field`` (e.g. the material ids already predicted)."""
        store = self.store(self.collection_of(doc_cls))
        return {
            r[field] for r in store.query(criteria=criteria or {}, properties=[field]) if field in r
        }

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

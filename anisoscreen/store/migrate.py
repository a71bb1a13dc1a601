"""Copy a legacy montydb store into the embedded SQLite engine, and prove nothing was lost.

Each montydb collection file under ``<data_dir>/store/<database>/`` is read once (the old
store is only read) and upserted into the embedded store in chunks. Then both sides are
compared: the number of documents and a checksum per collection, the SHA-256 of the sorted
per-document fingerprints of the whole document (timestamps included, Mongo's ``_id`` left
out). A mismatch, or an embedded store that already holds documents, is a :class:`StoreError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anisoscreen.errors import StoreError
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store.backends import EMBEDDED, build_store
from anisoscreen.store.codec import encode, key_text
from anisoscreen.store.layout import COLLECTIONS, JOB_COLLECTION, JOB_DATA_COLLECTION, store_key
from anisoscreen.store.sqlite import SQLiteStore

__all__ = ["CollectionCopy", "checksum", "migrate_montydb"]

CHUNK = 500


@dataclass(frozen=True)
class CollectionCopy:
    """What one collection's migration found: documents on each side and the checksum."""

    collection: str
    source_documents: int
    duplicate_keys: int
    copied: int
    checksum: str


def _fingerprint(doc: dict[str, Any]) -> bytes:
    content = {k: v for k, v in doc.items() if k != "_id"}
    return hashlib.blake2b(encode(content, sort_keys=True), digest_size=16).digest()


def checksum(docs: Iterable[dict[str, Any]]) -> str:
    """Order-independent SHA-256 of documents (``_id`` left out)."""
    digest = hashlib.sha256()
    for fingerprint in sorted(_fingerprint(doc) for doc in docs):
        digest.update(fingerprint)
    return digest.hexdigest()


def _source_collections(settings: AnisoscreenSettings) -> list[str]:
    folder = settings.monty_store_path / settings.database
    names = [*COLLECTIONS, JOB_COLLECTION, JOB_DATA_COLLECTION]
    return [
        name
        for name in names
        if (folder / f"{settings.collection_prefix}{name}.collection").is_file()
    ]


def migrate_montydb(settings: AnisoscreenSettings) -> list[CollectionCopy]:
    """Copy every montydb collection of ``settings`` into its embedded store and verify it.

    Raises
    ------
    StoreError
        No montydb store is there, the embedded store is not empty, or a count or checksum
        differs after the copy.
    """
    source_settings = settings.model_copy(update={"store": "monty"})
    target_settings = settings.model_copy(update={"store": EMBEDDED})
    names = _source_collections(settings)
    if not names:
        raise StoreError(
            f"no montydb store at {settings.monty_store_path / settings.database}; "
            "pass the --data-dir that holds its 'store' folder"
        )
    targets: dict[str, SQLiteStore] = {}
    for name in names:
        target = build_store(target_settings, name)
        assert isinstance(target, SQLiteStore)
        targets[name] = target
        target.connect()
        if target.count():
            raise StoreError(
                f"the embedded store {Path(target_settings.embedded_store_path)} already holds "
                f"documents ({target.collection_name}); migrate into an empty one (move it aside)"
            )
    copies = []
    for name in names:
        source = build_store(source_settings, name)
        source.connect()
        try:
            copies.append(_copy(name, source, targets[name]))
        finally:
            source.close()
            targets[name].close()
    return copies


def _copy(name: str, source: Any, target: SQLiteStore) -> CollectionCopy:
    key = store_key(name)
    latest: dict[str, dict[str, Any]] = {}
    n_source = 0
    for doc in source.query({}):
        n_source += 1
        doc.pop("_id", None)
        latest[key_text(doc, key)] = doc  # a repeated key (no unique index): the last wins
    docs = list(latest.values())
    for start in range(0, len(docs), CHUNK):
        target.upsert_records(docs[start : start + CHUNK])
    expected = checksum(docs)
    copied = target.count()
    found = checksum(target.query({}))
    if copied != len(docs) or found != expected:
        raise StoreError(
            f"migrating {name} did not verify: {len(docs)} documents read, {copied} stored, "
            f"checksum {expected[:12]} read, {found[:12]} stored; the montydb store is unchanged"
        )
    return CollectionCopy(name, n_source, n_source - len(docs), copied, found)

"""The embedded store engine: one SQLite file, a JSON document per row, real indexes.

:class:`SQLiteStore` is a maggma ``Store``. Each collection is one table
``(id, key, hash, doc)`` in ``<data_dir>/<database>.sqlite``:

- ``doc`` is the document as JSON text (:mod:`anisoscreen.store.codec`);
- ``key`` holds the values of the store key as a JSON array, under a **unique** index, so two
  writers can never store one key twice;
- ``hash`` fingerprints the content, so an upsert of an unchanged document reads one index
  entry and writes nothing;
- every *indexed* field (the key fields and the store's ``indexes``) has an expression index on
  ``json_extract(doc, '$.field')``; criteria and sorts on those fields run as SQL on the index
  (:mod:`anisoscreen.store.sql`), anything else is evaluated in Python on the rows SQL selected.

Writes are SQLite transactions (``BEGIN IMMEDIATE``, one per call, write-ahead log): another
writer waits on the file lock up to ``timeout`` seconds, a killed writer loses only its open
transaction, and readers never wait. On a network file system (NFS, Lustre, GPFS...), where
hosts share no memory for the log's index, the file uses SQLite's rollback journal instead.
Every write that changes rows counts one *generation* in the same transaction
(:meth:`SQLiteStore.generation`), which readers use to see that nothing changed. A store on
a read-only file system or without write permission opens read-only (reads work; a write
raises one "read-only" line); a damaged file is reported as corrupt.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from maggma.core import Store
from mongomock.filtering import filter_applies, resolve_sort_key

from anisoscreen.errors import StoreError
from anisoscreen.store.codec import content_hash, decode, encode, get_path, key_text, prepare
from anisoscreen.store.health import corrupt_error, embedded_error
from anisoscreen.store.sql import (
    direction_of,
    field_expression,
    is_plain_field,
    order_by,
    translate,
)

__all__ = ["LOCK_TIMEOUT_S", "SQLiteStore", "UpsertCounts"]

LOCK_TIMEOUT_S = 600.0
"""Longest wait for another writer before giving up with a :class:`StoreError`."""

META_TABLE = "_anisoscreen_meta"
CACHE_KIB = 65_536
"""Page cache per connection (KiB)."""
MMAP_BYTES = 1 << 30
"""File bytes read through memory mapping."""
_SQL_VARIABLES = 500
_FETCH = 2000
_CHECKED: set[str] = set()  # files whose quick_check passed in this process


class UpsertCounts(tuple):
    """``(inserted, replaced, unchanged)`` documents of one upsert."""

    __slots__ = ()

    def __new__(cls, inserted: int = 0, replaced: int = 0, unchanged: int = 0) -> UpsertCounts:
        return super().__new__(cls, (inserted, replaced, unchanged))

    @property
    def inserted(self) -> int:
        """New documents."""
        return self[0]

    @property
    def replaced(self) -> int:
        """Documents whose content changed."""
        return self[1]

    @property
    def unchanged(self) -> int:
        """Documents skipped because their content hash matched."""
        return self[2]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def is_writable(path: Path) -> bool:
    """Whether the SQLite file ``path`` (or the folder it would be created in) can be written."""
    anchor = _existing_ancestor(path)
    try:
        if os.statvfs(anchor).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    folder = path.parent if path.parent.exists() else anchor
    if path.exists() and not os.access(path, os.W_OK):
        return False
    return os.access(folder, os.W_OK)


NETWORK_FILE_SYSTEMS = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "beegfs", "fuse.sshfs", "ceph", "panfs"}
)
"""File systems whose hosts share no memory: SQLite's write-ahead log would be unsafe there."""


def on_network_file_system(path: Path, mounts: Path = Path("/proc/mounts")) -> bool:
    """Whether ``path`` lies on a network file system (by the longest matching mount point)."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return False
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind in NETWORK_FILE_SYSTEMS


def _project(doc: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value: Any = doc
        found = True
        for part in name.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                found = False
                break
        if found:
            _set_path(out, name, value)
    return out


def _set_path(doc: dict[str, Any], name: str, value: Any) -> None:
    *parents, last = name.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def _sort_key(name: str) -> Callable[[dict[str, Any]], Any]:
    """Mongo's order of ``name``'s values (missing and null first)."""
    return lambda doc: resolve_sort_key(name, doc)


def _fields(properties: dict | list | None) -> list[str] | None:
    """Projected field names, or ``None`` for whole documents (exclusions are not supported)."""
    if properties is None:
        return None
    if isinstance(properties, dict):
        if not all(properties.values()):
            raise ValueError("the embedded store supports inclusion projections only")
        return [name for name in properties if name != "_id"]
    return [name for name in properties if name != "_id"]


class SQLiteStore(Store):
    """A maggma ``Store`` on one table of an SQLite file, with indexes on JSON fields.

    Parameters
    ----------
    path
        The SQLite file (created with its folder when missing and writable).
    collection_name
        The table.
    key
        maggma's key field (jobflow sets its own).
    unique_key
        The fields of the unique store key (default: ``[key]``); upserts replace on it.
    indexes
        Further fields (scalars or missing in every document) to index and query in SQL.
    timeout
        Seconds a writer waits for another one.
    """

    def __init__(
        self,
        path: str,
        collection_name: str,
        key: str = "task_id",
        unique_key: list[str] | None = None,
        indexes: list[str] | None = None,
        timeout: float = LOCK_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        self.path = str(path)
        self.collection_name = collection_name
        self.unique_key = list(unique_key or [key])
        self.indexes = list(indexes or [])
        self.timeout = timeout
        self.kwargs = kwargs
        super().__init__(key=key, **kwargs)
        self.key_fields = list(self.unique_key)
        self.read_only = False
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._table_exists = False
        self._indexed: frozenset[str] = frozenset()
        self._lock = threading.RLock()

    # -- connection -------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``sqlite://<file>:<table>``."""
        return f"sqlite://{self.path}:{self.collection_name}"

    @property
    def _collection(self) -> sqlite3.Connection:
        """The reading connection (maggma's name for the underlying collection)."""
        if self._reader is None:
            raise StoreError(f"the embedded store {self.path} is not connected")
        return self._reader

    @property
    def table(self) -> str:
        """The quoted table name."""
        return _quote(self.collection_name)

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return embedded_error(Path(self.path), exc, self.timeout)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def connect(self, force_reset: bool = False) -> None:
        """Open the file (read-only where it cannot be written), check it and its schema."""
        if self._reader is not None and not force_reset:
            return
        self.close()
        try:
            self._connect(Path(self.path))
        except BaseException:
            self.close()
            raise

    def _connect(self, path: Path) -> None:
        self.read_only = not is_writable(path)
        with self._guard():
            if self.read_only:
                self._reader = self._open_read_only(path)
            else:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the embedded store folder {path.parent}: "
                        f"{exc.strerror}; choose another --data-dir (ANISOSCREEN_DATA_DIR)"
                    ) from exc
                self._writer = self._open(path)
                journal = "DELETE" if on_network_file_system(path) else "WAL"
                self._writer.execute(f"PRAGMA journal_mode={journal}")
                self._writer.execute("PRAGMA synchronous=NORMAL")
                self._reader = self._open(path)
            self._check(path)
            self._load_schema()
            if not self.read_only:
                self._create_schema()

    def _open(self, path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(
            path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        # index pages of a large collection stay in memory (SQLite's default cache is 2 MB)
        connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        connection.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        return connection

    def _open_read_only(self, path: Path) -> sqlite3.Connection:
        if not path.exists():
            return sqlite3.connect(":memory:", check_same_thread=False)  # an empty store
        uri = path.resolve().as_uri()
        connection = sqlite3.connect(
            uri + "?mode=ro", uri=True, timeout=self.timeout, check_same_thread=False
        )
        try:  # another process may still write it (permissions only): follow its log
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError:
            connection.close()
            # a read-only mount without the log's shared-memory file: nobody writes it
            return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, check_same_thread=False)

    def _check(self, path: Path) -> None:
        if not path.exists() or str(path) in _CHECKED:
            return
        verdict = self._collection.execute("PRAGMA quick_check").fetchone()
        if not verdict or verdict[0] != "ok":
            raise corrupt_error(path, verdict[0] if verdict else "no answer from quick_check")
        _CHECKED.add(str(path))

    def _load_schema(self) -> None:
        rows = self._collection.execute(
            "SELECT type, name FROM sqlite_master WHERE tbl_name = ?", (self.collection_name,)
        ).fetchall()
        self._table_exists = any(kind == "table" for kind, _ in rows)
        prefix = f"{self.collection_name}__ix__"
        existing = {name[len(prefix) :] for kind, name in rows if name.startswith(prefix)}
        self._indexed = frozenset(
            name for name in {*self.key_fields, *self.indexes, *existing} if is_plain_field(name)
        )

    def _wanted_indexes(self) -> list[str]:
        return sorted(self._indexed)

    def _create_schema(self) -> None:
        names = {
            name
            for (name,) in self._collection.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name IN (?, ?)",
                (self.collection_name, META_TABLE),
            )
        }
        wanted = {f"{self.collection_name}__ix__{f}" for f in self._wanted_indexes()}
        if self._table_exists and META_TABLE in names and wanted <= names:
            return
        with self._transaction() as connection:
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (id INTEGER PRIMARY KEY, "
                "key TEXT NOT NULL, hash BLOB NOT NULL, doc TEXT NOT NULL)"
            )
            connection.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {_quote(self.collection_name + '__key')} "
                f"ON {self.table}(key)"
            )
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {META_TABLE} "
                "(name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
            )
            for name in self._wanted_indexes():
                connection.execute(
                    f"CREATE INDEX IF NOT EXISTS {_quote(self.collection_name + '__ix__' + name)}"
                    f" ON {self.table}({field_expression(name)})"
                )
        self._table_exists = True

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            for connection in (self._reader, self._writer):
                if connection is not None:
                    connection.close()
            self._reader = self._writer = None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SQLiteStore)
            and Path(self.path) == Path(other.path)
            and self.collection_name == other.collection_name
        )

    def __hash__(self) -> int:
        return hash((self.path, self.collection_name))

    # -- writing ----------------------------------------------------------------------
    def _read_only_error(self) -> StoreError:
        return StoreError(
            f"the embedded store {self.path} is read-only: reading works, but this command "
            "writes; run it on a writable copy or choose another --data-dir"
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.read_only or self._writer is None:
            raise self._read_only_error()
        with self._lock, self._guard():
            connection = self._writer
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @staticmethod
    def _advance(connection: sqlite3.Connection) -> None:
        connection.execute(
            f"INSERT INTO {META_TABLE}(name, value) VALUES ('generation', 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1"
        )

    def generation(self) -> int:
        """Number of writes that changed this store's file (0 for a new store)."""
        with self._lock, self._guard():
            try:
                row = self._collection.execute(
                    f"SELECT value FROM {META_TABLE} WHERE name = 'generation'"
                ).fetchone()
            except sqlite3.OperationalError:  # no table yet: a new or read-only empty store
                return 0
        return int(row[0]) if row else 0

    def upsert_records(self, records: list[dict[str, Any]]) -> UpsertCounts:
        """Insert or replace ``records`` on the store key in one transaction.

        A record whose content hash equals the stored one is skipped; a replaced record keeps
        the stored ``created_at``. Repeated keys: the last record wins.
        """
        with self._transaction() as connection:
            return self._upsert_in(connection, records)

    def replace_if(self, record: dict[str, Any], field: str, expected: Any) -> bool:
        """Compare-and-set: upsert ``record`` only if the stored one has ``field == expected``.

        ``expected=None``: only if nothing is stored under the key yet; a stored record
        without ``field`` counts as ``field == 0``. The check and the write share one
        ``BEGIN IMMEDIATE`` transaction, so two writers cannot both succeed.
        """
        key = key_text(record, self.key_fields)
        with self._transaction() as connection:
            row = connection.execute(
                f"SELECT doc FROM {self.table} WHERE key = ?", (key,)
            ).fetchone()
            if expected is None:
                if row is not None:
                    return False
            else:
                if row is None:
                    return False
                current = decode(row[0]).get(field)
                if (0 if current is None else current) != expected:
                    return False
            self._upsert_in(connection, [record])
        return True

    def _upsert_in(
        self, connection: sqlite3.Connection, records: list[dict[str, Any]]
    ) -> UpsertCounts:
        """The body of :meth:`upsert_records`, inside an open write transaction."""
        prepared = {key_text(r, self.key_fields): r for r in records}
        inserted = replaced = unchanged = 0
        keys = list(prepared)
        for start in range(0, len(keys), _SQL_VARIABLES):
            chunk = keys[start : start + _SQL_VARIABLES]
            stored = {
                key: (row_id, digest, created)
                for key, row_id, digest, created in connection.execute(
                    f"SELECT key, id, hash, doc -> '$.created_at' FROM {self.table} "
                    f"WHERE key IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
            }
            inserts, updates = [], []
            for key in chunk:
                record = prepare(prepared[key])
                digest = content_hash(record, prepared=True)
                found = stored.get(key)
                if found is None:
                    inserts.append((key, digest, encode(record, prepared=True).decode()))
                elif found[1] != digest:
                    if found[2] is not None and "created_at" in record:
                        record = {**record, "created_at": decode(found[2])}
                    updates.append((digest, encode(record, prepared=True).decode(), found[0]))
                else:
                    unchanged += 1
            connection.executemany(
                f"INSERT INTO {self.table}(key, hash, doc) VALUES (?, ?, ?)", inserts
            )
            connection.executemany(
                f"UPDATE {self.table} SET hash = ?, doc = ? WHERE id = ?", updates
            )
            inserted += len(inserts)
            replaced += len(updates)
        if inserted or replaced:
            self._advance(connection)
        return UpsertCounts(inserted, replaced, unchanged)

    def update(self, docs: list[dict] | dict, key: list | str | None = None) -> None:
        """Upsert ``docs`` on ``key`` (default: the store key), as maggma stores do."""
        from monty.json import jsanitize

        records = [
            jsanitize(d, allow_bson=True) for d in ([docs] if isinstance(docs, dict) else docs)
        ]
        if self.validator is not None:
            for record in records:
                self.validator.is_valid(record)
        wanted = [key] if isinstance(key, str) else list(key or self.key_fields)
        if wanted == self.key_fields:
            self.upsert_records(records)
            return
        with self._transaction() as connection:
            for record in records:
                criteria = {name: get_path(record, name) for name in wanted}
                ids = [row_id for row_id, _ in self._select(criteria, connection=connection)]
                text = encode(record).decode()
                digest = content_hash(record)
                if ids:
                    connection.execute(
                        f"UPDATE {self.table} SET key = ?, hash = ?, doc = ? WHERE id = ?",
                        (key_text(record, self.key_fields), digest, text, ids[0]),
                    )
                else:
                    connection.execute(
                        f"INSERT INTO {self.table}(key, hash, doc) VALUES (?, ?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET hash = excluded.hash, doc = excluded.doc",
                        (key_text(record, self.key_fields), digest, text),
                    )
            if records:
                self._advance(connection)

    def remove_docs(self, criteria: dict) -> None:
        """Delete the documents matching ``criteria``."""
        with self._transaction() as connection:
            translation = translate(criteria, self._indexed)
            if not translation.residual:
                connection.execute(
                    f"DELETE FROM {self.table} WHERE {translation.where}", translation.params
                )
            else:
                ids = [row_id for row_id, _ in self._select(criteria, connection=connection)]
                for start in range(0, len(ids), _SQL_VARIABLES):
                    chunk = ids[start : start + _SQL_VARIABLES]
                    connection.execute(
                        f"DELETE FROM {self.table} WHERE id IN ({', '.join('?' * len(chunk))})",
                        chunk,
                    )
            self._advance(connection)

    def ensure_index(self, key: str, unique: bool = False) -> bool:
        """Index the JSON field ``key`` (a scalar in every document); ``False`` if impossible."""
        if self.read_only or not is_plain_field(key):
            return False
        if key in self._indexed and not unique:
            return True
        kind = "UNIQUE INDEX" if unique else "INDEX"
        suffix = "__ux__" if unique else "__ix__"
        try:
            with self._transaction() as connection:
                connection.execute(
                    f"CREATE {kind} IF NOT EXISTS {_quote(self.collection_name + suffix + key)} "
                    f"ON {self.table}({field_expression(key)})"
                )
        except StoreError:
            return False
        self._indexed = self._indexed | {key}
        return True

    # -- reading ----------------------------------------------------------------------
    def _rows(
        self, sql: str, params: list[Any], connection: sqlite3.Connection | None = None
    ) -> Iterator[tuple]:
        if not self._table_exists:
            return
        with self._lock, self._guard():
            cursor = (connection or self._collection).execute(sql, params)
        try:
            while True:
                with self._lock, self._guard():
                    batch = cursor.fetchmany(_FETCH)
                if not batch:
                    return
                yield from batch
        finally:
            with suppress(sqlite3.ProgrammingError):  # the store closed before the reader ended
                cursor.close()

    def _select(
        self,
        criteria: dict | None,
        connection: sqlite3.Connection | None = None,
        order: str = "",
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(id, document)`` of every match (SQL on the indexed part, Python on the rest)."""
        translation = translate(criteria, self._indexed)
        rows = self._rows(
            f"SELECT id, doc FROM {self.table} WHERE {translation.where} {order}",
            translation.params,
            connection,
        )
        for row_id, text in rows:
            doc = decode(text)
            if not translation.residual or filter_applies(translation.residual, doc):
                yield row_id, doc

    def query(
        self,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[dict]:
        """Documents matching ``criteria``, with maggma's projection, sort, skip and limit."""
        fields = _fields(properties)
        translation = translate(criteria, self._indexed)
        order = order_by(sort, self._indexed)
        if not translation.residual and order is not None:
            yield from self._query_sql(
                translation.where, translation.params, order, fields, skip, limit
            )
            return
        docs: Iterator[dict[str, Any]] = (
            doc for _, doc in self._select(criteria, order=order or "")
        )
        if order is None and sort:
            ordered = list(docs)
            for name, direction in reversed(list(sort.items())):
                ordered.sort(key=_sort_key(name), reverse=direction_of(direction) < 0)
            docs = iter(ordered)
        returned = 0
        for index, doc in enumerate(docs):
            if index < skip:
                continue
            yield doc if fields is None else _project(doc, fields)
            returned += 1
            if limit and returned >= limit:
                return

    def _query_sql(
        self,
        where: str,
        params: list[Any],
        order: str,
        fields: list[str] | None,
        skip: int,
        limit: int,
    ) -> Iterator[dict[str, Any]]:
        page = ""
        if limit or skip:
            page = " LIMIT ? OFFSET ?"
            params = [*params, limit if limit else -1, skip]
        if fields is not None and all(is_plain_field(f) for f in fields):
            columns = ", ".join(f"doc -> '$.{f}'" for f in fields) or "NULL"
            sql = f"SELECT {columns} FROM {self.table} WHERE {where} {order}{page}"
            for row in self._rows(sql, params):
                doc: dict[str, Any] = {}
                for name, value in zip(fields, row, strict=False):
                    if value is not None:
                        _set_path(doc, name, decode(value))
                yield doc
            return
        sql = f"SELECT doc FROM {self.table} WHERE {where} {order}{page}"
        for (text,) in self._rows(sql, params):
            doc = decode(text)
            yield doc if fields is None else _project(doc, fields)

    def count(self, criteria: dict | None = None, hint: dict | None = None) -> int:
        """Number of documents matching ``criteria``."""
        translation = translate(criteria, self._indexed)
        if translation.residual:
            return sum(1 for _ in self._select(criteria))
        rows = self._rows(
            f"SELECT count(*) FROM {self.table} WHERE {translation.where}", translation.params
        )
        return next(iter(rows), (0,))[0]

    def distinct(self, field: str, criteria: dict | None = None, all_exist: bool = False) -> list:
        """Distinct values of ``field`` (array values counted element by element)."""
        translation = translate(criteria, self._indexed)
        if field in self._indexed and not translation.residual:
            rows = self._rows(
                f"SELECT DISTINCT doc -> '$.{field}' FROM {self.table} "
                f"WHERE ({translation.where}) AND doc -> '$.{field}' IS NOT NULL",
                translation.params,
            )
            return [decode(value) for (value,) in rows]
        seen: dict[bytes, Any] = {}
        for _, doc in self._select(criteria):
            value = get_path(doc, field)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    seen.setdefault(encode(item, sort_keys=True), item)
        return list(seen.values())

    def groupby(
        self,
        keys: list[str] | str,
        criteria: dict | None = None,
        properties: dict | list | None = None,
        sort: dict | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> Iterator[tuple[dict, list[dict]]]:
        """Documents grouped by the values of ``keys`` (in Python)."""
        names = [keys] if isinstance(keys, str) else list(keys)
        groups: dict[bytes, tuple[dict, list[dict]]] = {}
        for doc in self.query(criteria, sort=sort):
            values = {name: get_path(doc, name) for name in names}
            fields = _fields(properties)
            group = groups.setdefault(encode(values, sort_keys=True), (values, []))
            group[1].append(doc if fields is None else _project(doc, fields))
        items = list(groups.values())[skip:]
        yield from items[:limit] if limit else items

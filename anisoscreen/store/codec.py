"""Documents as JSON text for the embedded SQLite engine, without losing their types.

SQLite's JSON functions index and query the stored text, so documents are stored as JSON
(encoded by orjson). Values JSON cannot hold are tagged as one-key objects and restored on
reading: ``{"$date": iso}`` (datetime), ``{"$oid": hex}`` (bson ObjectId), ``{"$float": "nan"}``
(non-finite floats, which JSON writers would turn into ``null``) and ``{"$bytes": base64}``.
:func:`content_hash` is the fingerprint that lets an upsert skip unchanged documents.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
from typing import Any

import orjson
from bson import ObjectId

from anisoscreen.dotted_path import get_path

__all__ = [
    "BOOKKEEPING_FIELDS",
    "content_hash",
    "decode",
    "encode",
    "get_path",
    "key_text",
    "prepare",
]

BOOKKEEPING_FIELDS = frozenset({"_id", "last_updated", "created_at"})
"""Fields that do not make a document's content differ (timestamps, Mongo's ``_id``)."""

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_SERIALIZE_NUMPY


def _tag(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$date": value.isoformat()}
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot store a {type(value).__name__} in the embedded store")


def _has_non_finite(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return not math.isfinite(value)
    if kind is dict:
        return any(_has_non_finite(v) for v in value.values())
    if kind is list:
        return any(_has_non_finite(v) for v in value)
    return False


def _tag_non_finite(value: Any) -> Any:
    kind = type(value)
    if kind is float and not math.isfinite(value):
        return {"$float": repr(value)}
    if kind is dict:
        return {k: _tag_non_finite(v) for k, v in value.items()}
    if kind is list:
        return [_tag_non_finite(v) for v in value]
    return value


def prepare(value: Any) -> Any:
    """``value`` with non-finite floats tagged (the one Python pass over a document)."""
    return _tag_non_finite(value) if _has_non_finite(value) else value


def encode(value: Any, sort_keys: bool = False, prepared: bool = False) -> bytes:
    """JSON bytes of ``value`` with datetimes, ObjectIds, bytes and nan/inf tagged.

    ``prepared``: ``value`` came from :func:`prepare` already.
    """
    if not prepared:
        value = prepare(value)
    option = _OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS
    return orjson.dumps(value, default=_tag, option=option)


_TAGS = frozenset({"$date", "$oid", "$float", "$bytes"})


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((name, inner),) = value.items()
            if name == "$date":
                return dt.datetime.fromisoformat(inner)
            if name == "$oid":
                return ObjectId(inner)
            if name == "$float":
                return float(inner)
            if name == "$bytes":
                return base64.b64decode(inner)
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def _tag_sites(raw: bytes) -> list[str] | None:
    """Keys whose values are tagged objects (``"key":{"$...``), or ``None`` if unsure."""
    names = []
    start = 0
    while (found := raw.find(b'"$', start)) != -1:
        start = found + 2
        end = found - 3  # the closing quote of the key before ``:{``
        if raw[end:found] != b'":{':
            return None
        names.append(raw[raw.rfind(b'"', 0, end) + 1 : end].decode())
    return names


def decode(text: str | bytes) -> Any:
    """The value :func:`encode` wrote (tagged values restored).

    Documents tag their timestamps at the top level; when every tag in the text is one of
    the top level's values, only those are converted, without walking the document.
    """
    value = orjson.loads(text)
    raw = text.encode() if isinstance(text, str) else text
    if b'"$' not in raw:
        return value
    sites = _tag_sites(raw)
    if type(value) is dict and sites is not None:
        for name in sites:
            item = value.get(name)
            if type(item) is not dict or len(item) != 1 or next(iter(item)) not in _TAGS:
                break  # a nested tag: walk the whole document
            value[name] = _untag(item)
        else:
            return value
    return _untag(value)


def content_hash(record: dict[str, Any], prepared: bool = False) -> bytes:
    """16-byte fingerprint of a document's content (bookkeeping fields left out)."""
    content = {k: v for k, v in record.items() if k not in BOOKKEEPING_FIELDS}
    encoded = encode(content, sort_keys=True, prepared=prepared)
    return hashlib.blake2b(encoded, digest_size=16).digest()


def key_text(record: dict[str, Any], key: list[str]) -> str:
    """The unique-key column value of ``record``: its ``key`` values as a JSON array."""
    return encode([get_path(record, field) for field in key]).decode()

"""Mongo criteria and sorts as SQL on the embedded engine's JSON column, where that is exact.

A field the store declares *indexed* holds a scalar (string, number, null) or is missing; on
such fields equality, ``$in``, ``$nin``, ``$ne``, ranges and ``$exists`` become SQL on the
same ``json_extract`` expression as the field's index, so SQLite answers them from the index.
Everything else (other fields, other operators, ``$or`` branches that do not translate
whole, boolean values) is returned as a *residual* criteria that the store evaluates in Python
with mongomock's matcher on the rows the SQL part selected: a correct scan, never a wrong
answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Translation",
    "direction_of",
    "field_expression",
    "is_plain_field",
    "order_by",
    "translate",
]

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


@dataclass
class Translation:
    """The SQL ``where`` of a criteria, its parameters, and what is left for Python."""

    where: str = "1"
    params: list[Any] = field(default_factory=list)
    residual: dict[str, Any] = field(default_factory=dict)


def is_plain_field(name: str) -> bool:
    """Whether ``name`` is a dotted path that can be written into SQL as a JSON path."""
    return bool(_FIELD.match(name))


def field_expression(name: str) -> str:
    """The SQL expression of a field (the one its index is built on)."""
    if not is_plain_field(name):
        raise ValueError(f"{name!r} is not a plain field name")
    return f"json_extract(doc, '$.{name}')"


def _scalar(value: Any) -> bool:
    if isinstance(value, bool):
        return False  # SQLite reads JSON true as 1; Mongo does not equate them
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int)


def _condition(expr: str, name: str, value: Any) -> tuple[str, list[Any]] | None:
    """SQL for ``{name: value}`` on an indexed field, or ``None`` when it must be scanned."""
    if value is None:
        return f"{expr} IS NULL", []
    if _scalar(value):
        return f"{expr} = ?", [value]
    if not isinstance(value, dict) or not value or not all(k.startswith("$") for k in value):
        return None
    parts: list[str] = []
    params: list[Any] = []
    for op, operand in value.items():
        if op == "$eq":
            sub = _condition(expr, name, operand)
            if sub is None or isinstance(operand, dict):
                return None
            parts.append(sub[0])
            params += sub[1]
        elif op == "$ne" and (operand is None or _scalar(operand)):
            if operand is None:
                parts.append(f"{expr} IS NOT NULL")
            else:
                parts.append(f"({expr} IS NULL OR {expr} != ?)")
                params.append(operand)
        elif op in _RANGES and _scalar(operand):
            kind = "'text'" if isinstance(operand, str) else "'integer', 'real'"
            parts.append(f"({expr} {_RANGES[op]} ? AND typeof({expr}) IN ({kind}))")
            params.append(operand)
        elif op in ("$in", "$nin") and isinstance(operand, list | tuple):
            values = [v for v in operand if v is not None]
            if not all(_scalar(v) for v in values):
                return None
            has_null = len(values) < len(operand)
            listed = f"{expr} IN ({', '.join('?' * len(values))})" if values else "0"
            if op == "$in":
                parts.append(f"({listed} OR {expr} IS NULL)" if has_null else listed)
            else:
                null_part = f"{expr} IS NOT NULL" if has_null else f"{expr} IS NULL"
                joined = "AND" if has_null else "OR"
                parts.append(f"({null_part} {joined} NOT ({listed}))")
            params += values
        elif op == "$exists":
            path = expr.replace("json_extract", "json_type", 1)
            parts.append(f"{path} IS {'NOT ' if operand else ''}NULL")
        else:
            return None
    return " AND ".join(parts), params


def translate(criteria: dict[str, Any] | None, indexed: Iterable[str]) -> Translation:
    """Split ``criteria`` into SQL on the ``indexed`` fields and a residual for Python."""
    indexed = frozenset(indexed)
    result = Translation()
    wheres: list[str] = []
    residual_and: list[dict[str, Any]] = []
    for name, value in (criteria or {}).items():
        if name == "$and" and isinstance(value, list):
            for part in value:
                sub = translate(part, indexed)
                wheres.append(sub.where)
                result.params += sub.params
                if sub.residual:
                    residual_and.append(sub.residual)
            continue
        if name == "$or" and isinstance(value, list) and value:
            subs = [translate(part, indexed) for part in value]
            if all(not sub.residual for sub in subs):
                wheres.append("(" + " OR ".join(f"({sub.where})" for sub in subs) + ")")
                for sub in subs:
                    result.params += sub.params
                continue
        sql = None
        if name in indexed and is_plain_field(name):
            sql = _condition(field_expression(name), name, value)
        if sql is None:
            result.residual[name] = value
            continue
        wheres.append(sql[0])
        result.params += sql[1]
    if residual_and:
        result.residual.setdefault("$and", []).extend(residual_and)
    result.where = " AND ".join(f"({w})" for w in wheres if w != "1") or "1"
    return result


def direction_of(direction: Any) -> int:
    """A sort direction (1, -1 or maggma's ``Sort``) as an int."""
    return int(getattr(direction, "value", direction))


def order_by(sort: dict[str, int] | None, indexed: Iterable[str]) -> str | None:
    """``ORDER BY`` for ``sort`` when every field is indexed ('' for no sort), else ``None``."""
    if not sort:
        return ""
    indexed = frozenset(indexed)
    if not all(name in indexed and is_plain_field(name) for name in sort):
        return None
    terms = [
        f"{field_expression(name)} {'DESC' if direction_of(direction) < 0 else 'ASC'}"
        for name, direction in sort.items()
    ]
    return "ORDER BY " + ", ".join([*terms, "id"])

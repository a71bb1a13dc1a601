"""Column arrays of one snapshot's predictions: vectorised candidate filters, joins and sorts.

A new filter combination in the results browser used to match every cached record against
the Mongo criteria with mongomock, join the matches with their validations and sort the
joined rows in Python: 0.1-2 s on a 3,000-candidate store. :class:`PredictionColumns` keeps
what those steps need as numpy arrays, built once per snapshot (lazily, per field):

* :meth:`PredictionColumns.mask` evaluates the criteria of
  :meth:`anisoscreen.query.CandidateQuery.criteria` as boolean masks. The operators the query
  emits (``$gte``/``$lte`` on numbers, ``$in``, ``$all``/``$nin`` on element lists, equality
  on strings) are vectorised with the semantics of a Mongo store (a missing or ``None`` value
  never satisfies a bound, ``$nin`` matches a missing list); any other condition, or a field
  holding values of other types, is matched record by record with mongomock as before.
* :meth:`PredictionColumns.newest` keeps the newest matching prediction of each material, as
  :func:`anisoscreen.query.join_validations` does (ties: the first stored wins).
* :meth:`PredictionColumns.order` sorts like :func:`anisoscreen.query.sort_rows`: by the
  row's sort value, ties by material id, rows without a value last (by material id).

Rows (:class:`~anisoscreen.query.CandidateRow`) are built once per prediction and shared; each
is joined with its ionic refinement by :func:`anisoscreen.query.join_refinement`, as in
:func:`~anisoscreen.query.find_candidates`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from anisoscreen.query import SORT_FIELDS, CandidateRow, index_refinements, join_refinement
from anisoscreen.schemas import PredictionDoc, RefinementDoc, ValidationDoc, ValidationState

__all__ = ["PredictionColumns"]

_MISSING = object()
"""Marks a field absent from a record (as opposed to a stored ``None``)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of a record; :data:`_MISSING` when absent."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _aware(value: Any) -> datetime:
    """A stored timestamp as an aware datetime (UTC when naive; the epoch when missing)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return _EPOCH
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _dense_rank(values: Sequence[Any]) -> np.ndarray:
    """Rank of each (mutually comparable) value among the distinct values, ties equal."""
    distinct = sorted(set(values))
    position = {value: rank for rank, value in enumerate(distinct)}
    return np.fromiter((position[v] for v in values), dtype=np.int64, count=len(values))


class PredictionColumns:
    """Predictions of one snapshot as arrays, with their joined rows.

    Parameters
    ----------
    records
        The stored prediction records (what a store's matcher sees), without ``_id``.
    predictions
        The same records as documents, in the same order.
    validations
        Every validation of the snapshot (only completed ones are joined).
    refinements
        The ionic refinements of the snapshot (each joined to the prediction it refines).
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]],
        predictions: Sequence[PredictionDoc],
        validations: Sequence[ValidationDoc],
        refinements: Sequence[RefinementDoc] = (),
    ) -> None:
        self.records = records
        self._refinements = index_refinements(refinements)
        self.predictions = predictions
        self.size = len(predictions)
        by_material: dict[str, list[ValidationDoc]] = {}
        for doc in validations:
            if doc.state == ValidationState.COMPLETED:
                by_material.setdefault(doc.material_id, []).append(doc)
        self._validations = {
            mid: sorted(docs, key=lambda d: d.last_updated, reverse=True)
            for mid, docs in by_material.items()
        }
        self.material_rank = _dense_rank([record["material_id"] for record in records])
        # newest first within a material; the stable sort keeps the first stored among ties
        newest_first = sorted(
            range(self.size),
            key=lambda i: (
                _aware(records[i].get("created_at")),
                _aware(records[i].get("last_updated")),
            ),
            reverse=True,
        )
        self.age_rank = np.empty(self.size, dtype=np.int64)
        self.age_rank[newest_first] = np.arange(self.size)
        self._rows: list[CandidateRow | None] = [None] * self.size
        self._numbers: dict[str, np.ndarray | None] = {}
        self._scalars: dict[str, list[Any] | None] = {}
        self._lists: dict[str, list[frozenset] | None] = {}
        self._sort_keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -- rows -------------------------------------------------------------------------------
    def row(self, index: int) -> CandidateRow:
        """The joined row of prediction ``index`` (built once)."""
        row = self._rows[index]
        if row is None:
            doc = self.predictions[index]
            row = self._rows[index] = CandidateRow(
                prediction=doc,
                validations=self._validations.get(doc.material_id, []),
                refinement=join_refinement(doc, self._refinements),
            )
        return row

    def rows(self, indices: np.ndarray) -> list[CandidateRow]:
        """The joined rows of these predictions, in this order."""
        return [self.row(int(i)) for i in indices]

    # -- columns ----------------------------------------------------------------------------
    def _number_column(self, path: str) -> np.ndarray | None:
        """Floats at ``path`` (NaN: missing or ``None``); ``None`` if any value is no number."""
        if path not in self._numbers:
            values = [_field(record, path) for record in self.records]
            column: np.ndarray | None = None
            if all(v is _MISSING or v is None or _is_number(v) for v in values):
                column = np.array(
                    [math.nan if v is _MISSING or v is None else float(v) for v in values],
                    dtype=float,
                )
            self._numbers[path] = column
        return self._numbers[path]

    def _scalar_column(self, path: str) -> list[Any] | None:
        """Scalar values at ``path`` (``None`` when missing); ``None`` if any is a container."""
        if path not in self._scalars:
            values = [_field(record, path) for record in self.records]
            column: list[Any] | None = None
            if all(v is _MISSING or isinstance(v, str | int | float | type(None)) for v in values):
                column = [None if v is _MISSING else v for v in values]
            self._scalars[path] = column
        return self._scalars[path]

    def _list_column(self, path: str) -> list[frozenset] | None:
        """Sets of the strings at ``path`` (empty when missing); ``None`` if not all lists."""
        if path not in self._lists:
            values = [_field(record, path) for record in self.records]
            column: list[frozenset] | None = None
            if all(
                v is _MISSING or (isinstance(v, list) and all(isinstance(s, str) for s in v))
                for v in values
            ):
                column = [frozenset() if v is _MISSING else frozenset(v) for v in values]
            self._lists[path] = column
        return self._lists[path]

    # -- filters ----------------------------------------------------------------------------
    def _condition_mask(self, path: str, condition: Any) -> np.ndarray | None:
        """Mask of one ``{path: condition}``; ``None`` when not vectorised here."""
        if not isinstance(condition, dict):
            column = self._scalar_column(path)
            if column is None or not isinstance(condition, str):
                return None
            return np.fromiter((v == condition for v in column), dtype=bool, count=self.size)
        operators = set(condition)
        if operators and operators <= {"$gte", "$lte"}:
            numbers = self._number_column(path)
            bounds = condition.values()
            if numbers is None or not all(_is_number(v) and not math.isnan(v) for v in bounds):
                return None
            mask = np.ones(self.size, dtype=bool)
            with np.errstate(invalid="ignore"):
                if "$gte" in condition:
                    mask &= numbers >= condition["$gte"]
                if "$lte" in condition:
                    mask &= numbers <= condition["$lte"]
            return mask
        if operators == {"$in"} and isinstance(condition["$in"], list):
            column = self._scalar_column(path)
            wanted = condition["$in"]
            if column is None or not all(
                isinstance(v, str) or _is_number(v) or v is None for v in wanted
            ):
                return None
            allowed = set(wanted)
            return np.fromiter(
                (v in allowed and not isinstance(v, bool) for v in column),
                dtype=bool,
                count=self.size,
            )
        if operators and operators <= {"$all", "$nin"}:
            sets = self._list_column(path)
            lists = condition.values()
            if sets is None or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v) for v in lists
            ):
                return None
            required = frozenset(condition.get("$all", []))
            excluded = frozenset(condition.get("$nin", []))
            if "$all" in condition and not required:
                return np.zeros(self.size, dtype=bool)  # Mongo: an empty $all matches nothing
            return np.fromiter(
                (required <= s and not (excluded & s) for s in sets),
                dtype=bool,
                count=self.size,
            )
        return None

    def mask(self, criteria: dict[str, Any]) -> np.ndarray:
        """Which predictions match Mongo ``criteria`` (a store's semantics)."""
        mask = np.ones(self.size, dtype=bool)
        leftover: dict[str, Any] = {}
        for path, condition in criteria.items():
            part = None if path.startswith("$") else self._condition_mask(path, condition)
            if part is None:
                leftover[path] = condition
            else:
                mask &= part
        if leftover:
            from mongomock.filtering import filter_applies

            for index in np.flatnonzero(mask):
                if not filter_applies(leftover, self.records[int(index)]):
                    mask[index] = False
        return mask

    def newest(self, mask: np.ndarray) -> np.ndarray:
        """Indices of the newest masked prediction of each material (any order)."""
        selected = np.flatnonzero(mask)
        if selected.size == 0:
            return selected
        by_material = selected[np.lexsort((self.age_rank[selected], self.material_rank[selected]))]
        groups = self.material_rank[by_material]
        first = np.ones(by_material.size, dtype=bool)
        first[1:] = groups[1:] != groups[:-1]
        return by_material[first]

    def warm(self) -> None:
        """Build the columns of every filter and sort key now (not in the first request)."""
        for path in ("anisotropy_ratio", "eps_total.eps_poly", "figure_of_merit"):
            self._number_column(path)
        for path in ("dimensionality", "model", "material_id"):
            self._scalar_column(path)
        self._list_column("elements")
        for field in SORT_FIELDS:
            self._sort_key(field)

    # -- sorting ----------------------------------------------------------------------------
    def _sort_key(self, field: str) -> tuple[np.ndarray, np.ndarray]:
        """(has a value, rank of the value) of every prediction's row for ``field``."""
        if field not in self._sort_keys:
            values = [self.row(i).sort_value(field) for i in range(self.size)]
            present = np.array([not _is_missing(v) for v in values], dtype=bool)
            ranks = np.full(self.size, -1, dtype=np.int64)
            if present.any():
                ranks[present] = _dense_rank([v for v, p in zip(values, present, strict=True) if p])
            self._sort_keys[field] = (present, ranks)
        return self._sort_keys[field]

    def order(self, indices: np.ndarray, field: str, descending: bool) -> np.ndarray:
        """``indices`` sorted by ``field``; ties by material id, rows without a value last."""
        present, ranks = self._sort_key(field)
        has = indices[present[indices]]
        lacks = indices[~present[indices]]
        value = -ranks[has] if descending else ranks[has]
        has = has[np.lexsort((self.material_rank[has], value))]
        lacks = lacks[np.argsort(self.material_rank[lacks], kind="stable")]
        return np.concatenate([has, lacks])

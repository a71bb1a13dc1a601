"""A read-only, periodically refreshed in-memory view of the results store for the server.

The embedded store (montydb) has no indexes: every query scans a collection and every
record is parsed again. The browser asks for pages of the same few thousand predictions over
and over, so :class:`ResultsView` reads the predictions, validations and runs once into a
:class:`Snapshot` and re-reads them when the snapshot is older than ``refresh_s``. Candidate
filters are the Mongo criteria of :meth:`anisoscreen.query.CandidateQuery.criteria`, applied
to the cached records with mongomock's matcher (the same semantics a store applies), then
joined and sorted by :mod:`anisoscreen.query`. Structures (``candidates``) are read per
material, on demand. Nothing here writes.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from anisoscreen.query import CandidateQuery, CandidateRow, join_validations, sort_rows
from anisoscreen.schemas import (
    CandidateDoc,
    PredictionDoc,
    ScreeningRunDoc,
    ValidationDoc,
    ValidationState,
)
from anisoscreen.store import ResultsStore

__all__ = ["ResultsView", "Snapshot"]


@dataclass
class Snapshot:
    """Predictions (raw records and documents), validations and runs read at ``loaded_at``."""

    records: list[dict[str, Any]]
    predictions: list[PredictionDoc]
    validations: list[ValidationDoc]
    runs: list[ScreeningRunDoc]
    n_candidates: int
    loaded_at: float
    cache: dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, results: ResultsStore) -> Snapshot:
        """Read the collections the pages need (one scan each)."""
        records = [
            {k: v for k, v in record.items() if k != "_id"}
            for record in results.records("predictions")
        ]
        return cls(
            records=records,
            predictions=[PredictionDoc.model_validate(record) for record in records],
            validations=results.query(ValidationDoc),
            runs=results.query(ScreeningRunDoc),
            n_candidates=results.count("candidates"),
            loaded_at=time.monotonic(),
        )

    @property
    def completed(self) -> list[ValidationDoc]:
        """Completed validations (the only ones joined with predictions)."""
        return [v for v in self.validations if v.state == ValidationState.COMPLETED]

    def matching(self, criteria: dict[str, Any]) -> list[PredictionDoc]:
        """Predictions whose record matches Mongo ``criteria``."""
        from mongomock.filtering import filter_applies

        if not criteria:
            return list(self.predictions)
        return [
            doc
            for record, doc in zip(self.records, self.predictions, strict=True)
            if filter_applies(criteria, record)
        ]

    def candidate_rows(self, query: CandidateQuery) -> list[CandidateRow]:
        """Every row matching ``query``, joined and sorted (as :func:`find_candidates`)."""
        key = ("rows", query.model_dump_json())
        if key not in self.cache:
            completed = self.completed
            ids = None
            if query.validated_only:
                ids = {v.material_id for v in completed if v.epsilon_electronic is not None}
            rows = join_validations(self.matching(query.criteria(ids)), completed)
            if query.validated_only:
                rows = [row for row in rows if row.validated]
            rows = sort_rows(rows, query.sort, query.is_descending)
            if len(self.cache) > 256:
                for stale in [k for k in self.cache if k != "candidates"]:
                    del self.cache[stale]
            self.cache[key] = rows[: query.limit] if query.limit else rows
        return self.cache[key]

    def summary_values(self) -> dict[str, Any]:
        """Counts and a_r statistics of the store (see :class:`~anisoscreen.web.models.Summary`)."""
        rows = self.candidate_rows(CandidateQuery())
        ratios = sorted(row.anisotropy_ratio for row in rows)
        if ratios:
            stats = {
                "min": ratios[0],
                "median": statistics.median(ratios),
                "mean": statistics.fmean(ratios),
                "p90": ratios[min(len(ratios) - 1, int(0.9 * len(ratios)))],
                "max": ratios[-1],
            }
        else:
            stats = {}
        dims = Counter(
            "unknown" if r.dimensionality is None else f"{r.dimensionality}D" for r in rows
        )
        return {
            "counts": {
                "candidates": self.n_candidates,
                "predictions": len(self.predictions),
                "validations": len(self.validations),
                "runs": len(self.runs),
            },
            "n_materials": len(rows),
            "n_validated": sum(row.validated for row in rows),
            "validation_states": dict(Counter(v.state.value for v in self.validations)),
            "models": dict(Counter(doc.model for doc in self.predictions)),
            "dimensionality": dict(sorted(dims.items())),
            "crystal_systems": dict(
                Counter(r.prediction.crystal_system or "unknown" for r in rows).most_common()
            ),
            "anisotropy_ratio": stats,
        }


class ResultsView:
    """Thread-safe access to a :class:`Snapshot` of one results store.

    Parameters
    ----------
    results
        The open results store (read only).
    refresh_s
        Re-read the store when the snapshot is older than this (seconds).
    """

    def __init__(self, results: ResultsStore, refresh_s: float = 30.0) -> None:
        self.results = results
        self.refresh_s = refresh_s
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The current snapshot, re-read when stale."""
        with self._lock:
            snapshot = self._snapshot
            if snapshot is None or time.monotonic() - snapshot.loaded_at > self.refresh_s:
                snapshot = self._snapshot = Snapshot.load(self.results)
            return snapshot

    def candidate(self, material_id: str) -> CandidateDoc | None:
        """The stored candidate (structure) of one material, if any.

        The candidate records are read in one scan on the first call after each snapshot
        load (a keyed lookup is a full scan on the embedded store anyway).
        """
        snapshot = self.snapshot()
        with self._lock:
            records = snapshot.cache.get("candidates")
            if records is None:
                records = snapshot.cache["candidates"] = {
                    record["material_id"]: record
                    for record in self.results.records("candidates")
                    if "material_id" in record
                }
        record = records.get(material_id)
        return None if record is None else CandidateDoc.from_store(record)

"""A read-only, periodically refreshed in-memory view of the results store for the server.

The browser asks for pages of the same predictions over and over, filtered and sorted many
ways, so :class:`ResultsView` reads the prediction records, validations and runs once into a
:class:`Snapshot` and re-reads them when the snapshot is older than ``refresh_s`` and the
store was written since (on the embedded store, whose write counter tells; other backends are
re-read every ``refresh_s``). Reading is kept lean so that a large store starts quickly:
prediction records become documents only when a page shows them, candidates (structures) are
counted and fetched one by one on the store's index, and on stores above ``WARM_LIMIT``
predictions the sort columns and the summary are built by the first request that needs them.
Candidate filters are the Mongo criteria of :meth:`anisoscreen.query.CandidateQuery.criteria`,
evaluated on the snapshot's column arrays (:class:`~anisoscreen.web.columns.PredictionColumns`,
a Mongo store's semantics), then joined and sorted as :func:`anisoscreen.query.find_candidates`
does. The first snapshot is read when the app starts; a re-read that took longer than
``sync_load_s`` runs in a background thread while requests are answered from the previous
snapshot. Nothing here writes.
"""

from __future__ import annotations

import gc
import logging
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from anisoscreen import tensor as tmath
from anisoscreen.query import CandidateQuery, CandidateRow
from anisoscreen.schemas import (
    CampaignDoc,
    CandidateDoc,
    PredictionDoc,
    RefinementDoc,
    ScreeningRunDoc,
    ValidationDoc,
    ValidationState,
)
from anisoscreen.store import ResultsStore
from anisoscreen.web.columns import PredictionColumns

__all__ = ["WARM_LIMIT", "LazyDocuments", "ResultsView", "Snapshot", "query_key"]

logger = logging.getLogger(__name__)

WARM_LIMIT = 20_000
"""Above this many predictions, sort columns and the summary are built on first use."""


class LazyDocuments(Sequence[PredictionDoc]):
    """Prediction records as documents, each validated the first time it is read."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self._docs: list[PredictionDoc | None] = [None] * len(records)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> PredictionDoc: ...

    @overload
    def __getitem__(self, index: slice) -> list[PredictionDoc]: ...

    def __getitem__(self, index: int | slice) -> PredictionDoc | list[PredictionDoc]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        doc = self._docs[index]
        if doc is None:
            doc = self._docs[index] = PredictionDoc.model_validate(self.records[index])
        return doc


@dataclass
class Snapshot:
    """Predictions (raw records and documents), validations, refinements, runs, candidates.

    The predictions are also held as column arrays (``columns``) for fast filters and sorts;
    ``predictions`` validates a record into a document when it is first read.
    """

    records: list[dict[str, Any]]
    predictions: Sequence[PredictionDoc]
    validations: list[ValidationDoc]
    runs: list[ScreeningRunDoc]
    n_candidates: int
    loaded_at: float
    revision: int | None = None
    campaigns: list[CampaignDoc] = field(default_factory=list)
    refinements: list[RefinementDoc] = field(default_factory=list)
    cache: dict[Any, Any] = field(default_factory=dict)
    columns: PredictionColumns = field(init=False)

    def __post_init__(self) -> None:
        self.columns = PredictionColumns(
            self.records, self.predictions, self.validations, self.refinements
        )

    @classmethod
    def load(cls, results: ResultsStore) -> Snapshot:
        """Read the prediction records, validations and runs; warm the tables of small stores.

        Candidates are only counted here (an index count on the embedded store); a material
        page reads its structure by id (:meth:`ResultsView.candidate`).
        """
        revision = results.revision()  # before reading: a write meanwhile shows up next time
        records = [
            record if "_id" not in record else {k: v for k, v in record.items() if k != "_id"}
            for record in results.records("predictions")
        ]
        for record in records:
            if record.get("birefringence") is None and record.get("dielectric_tensor"):
                # stored before dn existed: derived on read (cheap, no document validation)
                record["birefringence"] = tmath.birefringence(record["dielectric_tensor"])
        snapshot = cls(
            records=records,
            predictions=LazyDocuments(records),
            validations=results.query(ValidationDoc),
            runs=results.query(ScreeningRunDoc),
            n_candidates=results.count("candidates"),
            loaded_at=time.monotonic(),
            revision=revision,
            campaigns=results.query(CampaignDoc),
            refinements=results.query(RefinementDoc),
        )
        if len(records) <= WARM_LIMIT:
            snapshot.summary_values()  # the joined rows, their default order and the summary
            snapshot.columns.warm()  # the filter columns and every sort key
        return snapshot

    @property
    def completed(self) -> list[ValidationDoc]:
        """Completed validations (the only ones joined with predictions)."""
        return [v for v in self.validations if v.state == ValidationState.COMPLETED]

    def _validated_ids(self, query: CandidateQuery) -> set[str] | None:
        """Materials with a completed DFPT tensor when ``query`` wants only those."""
        if not query.validated_only:
            return None
        return {v.material_id for v in self.completed if v.epsilon_electronic is not None}

    def matching(self, criteria: dict[str, Any]) -> list[PredictionDoc]:
        """Predictions whose record matches Mongo ``criteria``."""
        if not criteria:
            return list(self.predictions)
        return [self.predictions[int(i)] for i in np.flatnonzero(self.columns.mask(criteria))]

    def candidate_rows(self, query: CandidateQuery) -> list[CandidateRow]:
        """Every row matching ``query``, joined and sorted (as :func:`find_candidates`)."""
        key = ("rows", query_key(query))
        rows = self.cache.get(key)
        if rows is None:
            columns = self.columns
            selected = columns.newest(columns.mask(query.criteria(self._validated_ids(query))))
            ordered = columns.order(selected, query.sort, query.is_descending)
            rows = columns.rows(ordered[: query.limit] if query.limit else ordered)
            if len(self.cache) > 256:
                for stale in [k for k in self.cache if k[0] == "rows"]:
                    del self.cache[stale]
            self.cache[key] = rows
        return rows

    def summary_values(self) -> dict[str, Any]:
        """Counts and a_r statistics of the store (see :class:`~anisoscreen.web.models.Summary`)."""
        if "summary" not in self.cache:
            self.cache["summary"] = self._summary_values()
        return self.cache["summary"]

    def _summary_values(self) -> dict[str, Any]:
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
            "models": dict(Counter(record.get("model") for record in self.records)),
            "dimensionality": dict(sorted(dims.items())),
            "crystal_systems": dict(
                Counter(r.prediction.crystal_system or "unknown" for r in rows).most_common()
            ),
            "anisotropy_ratio": stats,
        }


def query_key(query: CandidateQuery) -> tuple:
    """A cache key of the exact field values (JSON would write ``inf`` and ``None`` alike)."""
    return tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name, value in query.model_dump().items()
    )


class ResultsView:
    """Thread-safe access to a :class:`Snapshot` of one results store.

    Parameters
    ----------
    results
        The open results store (read only).
    refresh_s
        Re-read the store when the snapshot is older than this (seconds).
    sync_load_s
        A re-read runs within the request that finds the snapshot stale when the previous
        read took at most this long (seconds); a slower one runs in a background thread and
        requests get the previous snapshot until it is done. The first read always blocks.
    """

    def __init__(
        self, results: ResultsStore, refresh_s: float = 30.0, sync_load_s: float = 0.2
    ) -> None:
        self.results = results
        self.refresh_s = refresh_s
        self.sync_load_s = sync_load_s
        self._snapshot: Snapshot | None = None
        self._load_s = 0.0
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    def _load(self) -> Snapshot:
        start = time.monotonic()
        # The snapshot's millions of objects live until the next re-read (then reference
        # counting frees them). The cyclic collector is off while they are built (it would
        # traverse them again and again: half the read time of 100,000 predictions) and they
        # are left out of its later passes, which pause every thread (seconds on a
        # 3,000-candidate store while a re-read runs beside requests).
        collecting = gc.isenabled()
        gc.disable()
        try:
            snapshot = Snapshot.load(self.results)
        finally:
            if collecting:
                gc.enable()
        gc.freeze()
        self._load_s = time.monotonic() - start
        return snapshot

    def _load_in_background(self) -> None:
        snapshot = None
        try:
            snapshot = self._load()
        except Exception:  # keep serving the previous snapshot; the next stale request retries
            logger.exception("re-reading the results store failed")
        with self._lock:
            self._loader = None
            if snapshot is not None:
                self._snapshot = snapshot

    def snapshot(self) -> Snapshot:
        """The current snapshot; re-read when stale (see ``sync_load_s``)."""
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and time.monotonic() - snapshot.loaded_at <= self.refresh_s:
                return snapshot
            if snapshot is not None and self._loader is None:
                revision = self.results.revision()
                if revision is not None and revision == snapshot.revision:
                    snapshot.loaded_at = time.monotonic()  # nothing written since: still fresh
                    return snapshot
            if snapshot is None or self._load_s <= self.sync_load_s:
                snapshot = self._snapshot = self._load()
            elif self._loader is None:
                self._loader = threading.Thread(
                    target=self._load_in_background, name="anisoscreen-snapshot", daemon=True
                )
                self._loader.start()
            return snapshot

    def candidate(self, material_id: str) -> CandidateDoc | None:
        """The stored candidate (structure) of one material, if any (read by id, cached)."""
        cache = self.snapshot().cache
        key = ("candidate", material_id)
        if key not in cache:
            found = self.results.query(CandidateDoc, {"material_id": material_id}, limit=1)
            cache[key] = found[0] if found else None
        return cache[key]

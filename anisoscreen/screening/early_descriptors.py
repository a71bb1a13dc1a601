"""Ranking descriptors computed on the cores that the candidate stage leaves idle.

Reading a source is one core's work: parsing, checks and store records. Meanwhile the other
cores compute the dimensionality, crystal system and space group of the candidates already read
that pass the criteria, in worker processes
(:class:`~anisoscreen.screening.descriptors.DescriptorJobs`). When the stage has stored its
candidates, the finished ones go into the descriptor cache
(:mod:`~anisoscreen.screening.descriptor_cache`) and the workers stop. The prediction stage
finds those by structure hash and computes only the rest, beside the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from anisoscreen.candidates.filters import CandidateFields, ScreeningCriteria, filter_fields
from anisoscreen.schemas import CandidateDoc
from anisoscreen.screening import descriptor_cache
from anisoscreen.screening.descriptors import DescriptorJobs
from anisoscreen.store import ResultsStore

__all__ = ["MAX_WORKERS", "OFFER_BATCH", "EarlyDescriptors", "idle_cores"]

OFFER_BATCH = 32
"""Candidates filtered and handed to the workers together (a source with fewer starts none)."""
MAX_WORKERS = 3
"""Most worker processes: one core reads a pool file about three times as fast as a worker
describes what it reads (~1.7 against ~5 ms a structure), so more would wait."""


def idle_cores(processes: int | None) -> int:
    """Worker processes beside the reader: ``processes`` (``None``: all cores) less one, ≤ 3.

    The bound is :data:`MAX_WORKERS`.
    """
    return min(max((processes or os.cpu_count() or 1) - 1, 0), MAX_WORKERS)


class EarlyDescriptors:
    """Descriptors of the candidates being read, computed by ``workers`` worker processes.

    :meth:`offer` takes each candidate as it is read. Every :data:`OFFER_BATCH` of them, those
    that pass ``criteria`` and are not in the descriptor cache of ``results`` go to the
    workers, which start with the first batch. :meth:`store` stops the workers and caches
    what they finished. Leaving the ``with`` block stops them too and caches nothing.
    """

    def __init__(self, results: ResultsStore, criteria: ScreeningCriteria, workers: int) -> None:
        self._results = results
        self._criteria = criteria
        self._workers = workers
        self._waiting: list[CandidateDoc] = []
        self._jobs: DescriptorJobs | None = None

    def offer(self, doc: CandidateDoc) -> None:
        """Take one candidate just read (kept for the next batch)."""
        if self._workers < 1 or doc.structure_hash is None:
            return
        self._waiting.append(doc)
        if len(self._waiting) >= OFFER_BATCH:
            self._hand_over(self._waiting)
            self._waiting = []

    def _hand_over(self, batch: Sequence[CandidateDoc]) -> None:
        """Give the workers the candidates of ``batch`` that pass and are not cached."""
        kept, _, _ = filter_fields(CandidateFields.of(batch), self._criteria)
        chosen = {str(batch[i].structure_hash): batch[i].structure for i in kept}
        cached = descriptor_cache.lookup(self._results, chosen)
        new = {key: structure for key, structure in chosen.items() if key not in cached}
        if not new:
            return
        if self._jobs is None:
            self._jobs = DescriptorJobs({}, self._workers, chunk=16, background=True)
        self._jobs.add(new)

    def store(self) -> int:
        """Stop the workers and cache the descriptors they finished; returns how many."""
        if self._jobs is None:
            return 0
        self._jobs.close()
        finished = self._jobs.finished()
        self._jobs = None
        self._results.upsert(
            [
                descriptor_cache.as_doc(key, descriptor_cache.descriptor_values(values))
                for key, values in finished.items()
            ]
        )
        return len(finished)

    def __enter__(self) -> EarlyDescriptors:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._jobs is not None:
            self._jobs.close()
            self._jobs = None

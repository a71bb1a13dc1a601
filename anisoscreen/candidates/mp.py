"""Materials Project candidates through mp-api, paged, retried and cached so a fetch resumes.

``MPRester``'s constructor contacts the server, so the network sits behind the small
:class:`SummarySearcher` interface: :class:`MPResterSearcher` is the real client and tests
replay recorded responses through the same interface.

A fetch is two steps: the ids matching the criteria (one light query), then the full documents
in chunks of ``chunk_size`` ids. Each finished step is written to
``<cache_dir>/<query hash>/`` atomically, so an interrupted fetch resumes from the first
missing chunk and nothing is fetched twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from monty.json import jsanitize

from anisoscreen.candidates.json_cache import read_json_gz, write_json_gz_atomic
from anisoscreen.candidates.retry import MP_RETRY, RetryPolicy, TransientError
from anisoscreen.errors import SourceError

if TYPE_CHECKING:
    from anisoscreen.settings import AnisoscreenSettings

__all__ = [
    "MPCandidateQuery",
    "MPResterSearcher",
    "RetryPolicy",
    "SummarySearcher",
    "api_key",
    "cached_ids",
    "fetch_chunked",
    "fetch_mp_candidates",
    "retried",
]

SUMMARY_FIELDS = [
    "material_id",
    "formula_pretty",
    "nsites",
    "elements",
    "energy_above_hull",
    "band_gap",
    "is_stable",
    "structure",
]


class SummarySearcher(Protocol):
    """Anything with MP's ``materials.summary.search`` signature returning plain dicts."""

    def search(self, **kwargs: Any) -> list[dict[str, Any]]: ...


def api_key(settings: AnisoscreenSettings) -> str:
    """The Materials Project API key of ``settings`` (``MP_API_KEY``), or ``""`` when unset."""
    return settings.mp_api_key.get_secret_value() if settings.mp_api_key else ""


class MPResterSearcher:
    """The real client: ``MPRester(api_key).materials.<endpoint>.search``.

    Parameters
    ----------
    api_key
        Materials Project API key.
    endpoint
        ``summary`` (candidates) or ``dielectric`` (training data).
    """

    def __init__(self, api_key: str, endpoint: str = "summary") -> None:
        if not api_key:
            raise SourceError("no Materials Project API key: set MP_API_KEY")
        self._api_key = api_key
        self.endpoint = endpoint
        self._rester: Any = None

    def search(self, **kwargs: Any) -> list[dict[str, Any]]:
        if self._rester is None:
            from mp_api.client import MPRester

            self._rester = MPRester(api_key=self._api_key, mute_progress_bars=True)
        docs = getattr(self._rester.materials, self.endpoint).search(**kwargs)
        return [doc if isinstance(doc, dict) else doc.model_dump() for doc in docs]


@dataclass(frozen=True)
class MPCandidateQuery:
    """Server-side pre-filter (the exact criteria are re-applied locally)."""

    max_energy_above_hull: float = 0.050
    min_band_gap: float = 0.5
    max_sites: int = 40
    chunk_size: int = 500

    def search_kwargs(self) -> dict[str, Any]:
        return {
            "energy_above_hull": (0.0, self.max_energy_above_hull),
            "band_gap": (self.min_band_gap, 1000.0),
            "num_sites": (1, self.max_sites - 1),
        }

    @property
    def key(self) -> str:
        payload = json.dumps(
            {k: v for k, v in asdict(self).items() if k != "chunk_size"}, sort_keys=True
        )
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


def retried(retry: RetryPolicy, request: Callable[[], Any], what: str) -> Any:
    """Run ``request`` under ``retry``; raise one clean :class:`SourceError` at the end.

    Every exception counts as transient (network, server and rate-limit errors alike).
    """

    def attempt() -> Any:
        try:
            return request()
        except Exception as exc:
            raise TransientError(str(exc)) from None

    def give_up(message: str) -> SourceError:
        return SourceError(
            f"Materials Project request for {what} failed after {retry.retries + 1} attempts "
            f"({message}); check the network and MP_API_KEY, then re-run: finished chunks are "
            "cached"
        )

    return retry.run(attempt, give_up)


def fetch_mp_candidates(
    searcher: SummarySearcher,
    cache_dir: str | Path,
    query: MPCandidateQuery | None = None,
    retry: RetryPolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Fetch (or resume fetching) MP summary documents of every candidate.

    Parameters
    ----------
    searcher
        The MP client (real or recorded).
    cache_dir
        Folder for the resumable cache.
    query
        Server-side criteria and chunk size.
    retry
        Retry policy for transient failures (and the secret to keep out of errors).
    progress
        Called with ``(chunks_done, chunks_total)``.
    """
    query = query or MPCandidateQuery()
    folder = Path(cache_dir) / f"summary-{query.key}"
    ids = cached_ids(searcher, folder, query.search_kwargs(), retry)
    return fetch_chunked(searcher, ids, SUMMARY_FIELDS, folder, query.chunk_size, retry, progress)


def cached_ids(
    searcher: SummarySearcher,
    folder: Path,
    criteria: dict[str, Any],
    retry: RetryPolicy | None = None,
) -> list[str]:
    """Sorted material ids matching ``criteria`` (one light query; cached in ``folder``)."""
    ids_file = folder / "ids.json.gz"
    if ids_file.is_file():
        return read_json_gz(ids_file)
    found = retried(
        retry or MP_RETRY,
        lambda: searcher.search(**criteria, fields=["material_id"]),
        "the material ids",
    )
    ids = sorted({str(doc["material_id"]) for doc in found})
    write_json_gz_atomic(ids_file, ids)
    return ids


def fetch_chunked(
    searcher: SummarySearcher,
    ids: list[str],
    fields: list[str],
    folder: Path,
    chunk_size: int = 500,
    retry: RetryPolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Documents of ``ids`` fetched ``chunk_size`` at a time; each chunk cached in ``folder``."""
    retry = retry or MP_RETRY
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    documents: list[dict[str, Any]] = []
    for k, chunk in enumerate(chunks):
        chunk_file = folder / f"chunk-{k:05d}-{len(chunk)}.json.gz"
        if chunk_file.is_file():
            docs = read_json_gz(chunk_file)
        else:
            docs = retried(
                retry,
                partial(searcher.search, material_ids=chunk, fields=fields),
                f"chunk {k + 1}/{len(chunks)}",
            )
            docs = jsanitize(docs, strict=True, enum_values=True)
            write_json_gz_atomic(chunk_file, docs)
        documents.extend(docs)
        if progress is not None:
            progress(k + 1, len(chunks))
    return documents

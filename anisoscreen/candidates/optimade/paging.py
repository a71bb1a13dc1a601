"""Paging through an OPTIMADE ``/structures`` endpoint: resumable, de-duplicated, bounded."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from anisoscreen.candidates.json_cache import read_json_gz, write_json_gz_atomic
from anisoscreen.candidates.optimade.client import OptimadeRequestError, get_json
from anisoscreen.candidates.optimade.providers import resolve_provider
from anisoscreen.candidates.optimade.query import (
    EXCLUDED_FEATURES,
    OptimadeQuery,
    ServedFields,
    build_filter,
)
from anisoscreen.candidates.paging_guard import PagingGuard, page_limit_from
from anisoscreen.candidates.retry import OPTIMADE_RETRY, RetryPolicy
from anisoscreen.dotted_path import get_path
from anisoscreen.errors import AnisoscreenWarning, SourceError
from anisoscreen.handedness import right_handed
from anisoscreen.safe_text import safe_text
from anisoscreen.schemas import CandidateDoc

__all__ = [
    "OptimadeFetch",
    "OptimadePage",
]

LOGGER = logging.getLogger(__name__)
STRUCTURE_FIELDS = (
    "lattice_vectors",
    "cartesian_site_positions",
    "species",
    "species_at_sites",
    "nsites",
    "elements",
    "structure_features",
    "dimension_types",
    "nperiodic_dimensions",
)
GENERIC_STABILITY = ("energy_above_hull", "e_above_hull", "hull_distance")
GENERIC_BAND_GAP = ("band_gap", "bandgap")
_MP_ID = re.compile(r"^(mp|mvc)-\d+$")


@dataclass
class OptimadePage:
    """One page of a fetch: its candidates and the entries that could not become one."""

    number: int
    candidates: list[CandidateDoc] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    from_cache: bool = False


@dataclass
class OptimadeFetch:
    """A resumable, paged fetch of one provider's candidates.

    Parameters
    ----------
    source
        ``optimade:URL``, ``optimade:NAME`` or ``NAME``.
    cache_dir
        Folder of the page cache and paging state (one sub-folder per provider and query).
    query
        Criteria pushed to the server.
    retry
        Retry policy of every request.
    session
        A ``requests.Session`` (one is made when ``None``).
    """

    source: str
    cache_dir: Path
    query: OptimadeQuery = field(default_factory=OptimadeQuery)
    retry: RetryPolicy = field(default_factory=lambda: OPTIMADE_RETRY)
    session: Any = None

    def __post_init__(self) -> None:
        import requests

        self.provider = resolve_provider(self.source)
        self.cache_dir = Path(self.cache_dir)
        if self.session is None:
            self.session = requests.Session()
            self.session.headers["User-Agent"] = "anisoscreen (optimade client)"
        self._info: dict[str, Any] | None = None

    @property
    def structures_url(self) -> str:
        return f"{self.provider.base_url}/v1/structures"

    def _structures_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = get_json(
                self.session, f"{self.provider.base_url}/v1/info/structures", self.retry
            )
        return self._info

    def _provider_prefix(self) -> str:
        info = get_json(self.session, f"{self.provider.base_url}/v1/info", self.retry)
        return str(((info.get("meta") or {}).get("provider") or {}).get("prefix") or "")

    def served_fields(self) -> ServedFields:
        """The stability and band-gap properties the provider lists in ``/info/structures``."""
        properties = set(((self._structures_info().get("data") or {}).get("properties")) or {})
        stability, band_gap = self.provider.stability, self.provider.band_gap
        if not stability and not band_gap:
            prefix = self._provider_prefix()
            stability = tuple(f"_{prefix}_{n}" for n in GENERIC_STABILITY) if prefix else ()
            band_gap = tuple(f"_{prefix}_{n}" for n in GENERIC_BAND_GAP) if prefix else ()

        def first(names: tuple[str, ...]) -> str | None:
            return next((n for n in names if n.split(".")[0] in properties), None)

        return ServedFields(first(stability), first(band_gap))

    def plan(self) -> tuple[ServedFields, str, Path]:
        """The served fields, the filter and the cache folder of this fetch."""
        state_file = None
        folders = sorted(self.cache_dir.glob(f"{_slug(self.provider.name)}-*/state.json"))
        fields = None
        for state_file in folders:  # a started fetch keeps the fields it began with
            state = json.loads(state_file.read_text())
            if state.get("query") == _query_key(self.query):
                fields = ServedFields(state["stability"], state["band_gap"])
                break
        if fields is None:
            fields = self.served_fields()
        text = build_filter(self.query, fields)
        digest = hashlib.sha1(
            json.dumps([self.structures_url, text, self.query.page_limit]).encode()
        ).hexdigest()[:12]
        return fields, text, self.cache_dir / f"{_slug(self.provider.name)}-{digest}"

    def pages(
        self, progress: Callable[[int, int | None], None] | None = None
    ) -> Iterator[OptimadePage]:
        """Yield every page's candidates, reading finished pages from the cache first.

        ``progress`` is called with ``(pages_done, pages_total)`` after each page.
        """
        fields, text, folder = self.plan()
        state_file = folder / "state.json"
        state = json.loads(state_file.read_text()) if state_file.is_file() else None
        if state is None:
            params = {
                "filter": text,
                "page_limit": self.query.page_limit,
                "response_fields": ",".join([*STRUCTURE_FIELDS, *fields.response_fields()]),
            }
            state = {
                "url": self.structures_url,
                "filter": text,
                "query": _query_key(self.query),
                "stability": fields.stability,
                "band_gap": fields.band_gap,
                "pages": 0,
                "next": f"{self.structures_url}?{urlencode(params)}",
                "total": None,
                "complete": False,
            }
            _write_state(state_file, state)
        LOGGER.info("OPTIMADE filter for %s: %s", self.provider.name, text)
        seen: set[str] = set()
        guard = PagingGuard(
            state.get("max_pages") or page_limit_from(state["total"], state.get("page_size") or 0),
            set(state.get("links") or ()),
        )
        for number in range(state["pages"]):
            entries = read_json_gz(folder / f"page-{number:06d}.json.gz")
            problem = guard.page_problem(number, _entry_ids(entries))
            if problem is not None:  # a loop cached before the guard existed: cut it off
                self._stop(folder, state, number, problem)
                return
            yield self._page(number, entries, fields, seen, True)
            if progress:
                progress(number + 1, _page_total(state))
        if state.get("stopped"):
            self._warn_stopped(folder, state)
        while not state["complete"]:
            url = state["next"]
            try:
                body = get_json(self.session, url, self.retry)
            except OptimadeRequestError as exc:
                smaller = _smaller_page_limit(url, exc.detail)
                if state["pages"] or smaller is None:
                    raise
                # the provider caps the page size below ours: ask for what it allows
                state["next"] = smaller
                _write_state(state_file, state)
                continue
            entries = body.get("data") or []
            if not isinstance(entries, list):
                raise SourceError(
                    f"OPTIMADE source {self.provider.name}: a page's data is not a list"
                )
            number = state["pages"]
            meta = _mapping(body.get("meta"))
            if number == 0:
                guard.max_pages = page_limit_from(meta.get("data_returned"), len(entries))
                state["max_pages"] = guard.max_pages
            problem = guard.page_problem(number, _entry_ids(entries))
            if problem is not None:
                self._stop(folder, state, number, problem)
                return
            guard.fetched(url)
            next_link = _mapping(body.get("links")).get("next")
            if isinstance(next_link, dict):
                next_link = next_link.get("href")
            if not isinstance(next_link, str):
                next_link = None
            write_json_gz_atomic(folder / f"page-{number:06d}.json.gz", entries)
            stopped = guard.next_problem(next_link)
            state.update(
                pages=number + 1,
                next=None if stopped else next_link,
                total=meta.get("data_returned", state["total"]),
                page_size=state.get("page_size") or len(entries),
                complete=not next_link or not entries or stopped is not None,
                links=sorted(guard.links),
                stopped=stopped,
            )
            _write_state(state_file, state)
            yield self._page(number, entries, fields, seen, False)
            if progress:
                progress(number + 1, _page_total(state))
            if stopped:
                self._warn_stopped(folder, state)

    def _stop(self, folder: Path, state: dict[str, Any], pages: int, reason: str) -> None:
        """End a fetch for good after ``pages`` pages: a rerun reads those and fetches none."""
        for extra in folder.glob("page-*.json.gz"):
            if int(extra.name[5:11]) >= pages:
                extra.unlink()
        state.update(pages=pages, next=None, complete=True, stopped=reason)
        _write_state(folder / "state.json", state)
        self._warn_stopped(folder, state)

    def _warn_stopped(self, folder: Path, state: dict[str, Any]) -> None:
        warnings.warn(
            f"OPTIMADE source {self.provider.name}: {state['stopped']}; paging stopped after "
            f"{state['pages']} page(s) and their entries are used (remove {folder} to fetch "
            "again)",
            AnisoscreenWarning,
            stacklevel=3,
        )

    def _page(
        self,
        number: int,
        entries: list[dict[str, Any]],
        fields: ServedFields,
        seen: set[str],
        from_cache: bool,
    ) -> OptimadePage:
        page = OptimadePage(number, from_cache=from_cache)
        for entry in entries:
            if not isinstance(entry, dict):
                page.failures.append({"material_id": "?", "error": "entry is not an object"})
                continue
            material_id = self._material_id(str(entry.get("id")))
            if material_id in seen:
                continue
            seen.add(material_id)
            try:
                page.candidates.append(self._candidate(entry, material_id, fields))
            except Exception as exc:  # malformed or disordered entries are failures, not fatal
                page.failures.append({"material_id": material_id, "error": safe_text(exc)})
        return page

    def _material_id(self, entry_id: str) -> str:
        if _MP_ID.match(entry_id):
            return entry_id  # MP ids stay MP ids, so the known-dielectric criterion applies
        return f"{_slug(self.provider.name)}:{entry_id}"

    def _candidate(
        self, entry: dict[str, Any], material_id: str, fields: ServedFields
    ) -> CandidateDoc:
        from optimade.adapters import Structure as OptimadeStructure

        attributes = entry.get("attributes") or {}
        features = attributes.get("structure_features") or []
        if set(features) & set(EXCLUDED_FEATURES):
            raise ValueError(f"disordered structure ({', '.join(features)})")
        structure = right_handed(OptimadeStructure(_complete(entry)).as_pymatgen)
        if not structure.is_ordered:
            raise ValueError("disordered structure (partial occupancy)")
        return CandidateDoc.from_structure(
            structure,
            source=f"optimade:{self.provider.name}",
            material_id=material_id,
            energy_above_hull=_number(get_path(attributes, fields.stability)),
            band_gap=_number(get_path(attributes, fields.band_gap)),
        )

    def load(self, progress: Callable[[int, int | None], None] | None = None) -> Any:
        """Every page as one :class:`~anisoscreen.candidates.sources.CandidateBatch`."""
        from anisoscreen.candidates.sources import CandidateBatch

        batch = CandidateBatch()
        for page in self.pages(progress):
            batch.candidates.extend(page.candidates)
            batch.failures.extend(page.failures)
        return batch


def _complete(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with the optional properties the structure model requires set to ``None``."""
    from optimade.models import StructureResourceAttributes

    attributes = dict(entry.get("attributes") or {})
    for name, info in StructureResourceAttributes.model_fields.items():
        if info.is_required() and name not in attributes:
            attributes[name] = None
    attributes.setdefault("last_modified", None)
    return {"id": str(entry.get("id")), "type": "structures", "attributes": attributes}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _entry_ids(entries: list[Any]) -> list[str]:
    return [str(e.get("id")) if isinstance(e, dict) else repr(e) for e in entries]


def _number(value: Any) -> float | None:
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _smaller_page_limit(url: str, detail: str) -> str | None:
    """``url`` with the page size the provider allows (its stated maximum, else half)."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    if "page_limit" not in detail:
        return None
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    current = int(query.get("page_limit", 0))
    stated = re.search(r"page_limit is (\d+)", detail)
    limit = int(stated.group(1)) if stated else current // 2
    if not 0 < limit < current:
        return None
    query["page_limit"] = str(limit)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:60]


def _query_key(query: OptimadeQuery) -> str:
    return hashlib.sha1(repr(query).encode()).hexdigest()[:12]


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle)
    os.replace(tmp, path)


def _page_total(state: dict[str, Any]) -> int | None:
    total, size = state.get("total"), state.get("page_size")
    if not total or not size:
        return None
    return -(-int(total) // int(size))

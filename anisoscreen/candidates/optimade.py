"""Candidates from any OPTIMADE provider, streamed page by page and resumable.

``--source optimade:URL`` reads the ``/structures`` endpoint of any OPTIMADE base URL;
``--source optimade:NAME`` (or just ``NAME``, except ``mp``, which stays the mp-api source)
uses a named provider from :data:`PROVIDERS`. The screening criteria are pushed into the
OPTIMADE filter where the provider can evaluate them, and all of them are applied again on
the client (:func:`anisoscreen.candidates.filters.apply_criteria`), so the server-side filter
only saves bandwidth. Provider-specific stability and band-gap properties are found in the
provider's ``/info/structures`` (the first served name of each provider's list) and mapped
onto ``CandidateDoc.energy_above_hull`` and ``CandidateDoc.band_gap``.

Where each of the paper's criteria runs (``server``: in the OPTIMADE filter and again on the
client; ``client``: only on the client; ``no``: the provider serves no such value, so the
criterion cannot remove anything):

==========================  ========  =========  =========  ==========  ========  ========
criterion                   URL [1]_  alexandria mp         oqmd        gnome     jarvis
==========================  ========  =========  =========  ==========  ========  ========
(i) E above hull < 50 meV   server    server     client [2] server      server    no
(ii) not only noble gas/H   server    server     server     server      server    server
(iii) fewer than 40 sites   server    server     server     server      server    server
(iv) band gap > 0.5 eV      server    server     no [3]     server      server    no
(v) not a known dielectric  client    no [4]     client     no [4]      no [4]    no [4]
(vi) model's elements only  server    server     server     server      server    server
ordered (no disorder)       server    server     server     server      server    server
==========================  ========  =========  =========  ==========  ========  ========

.. [1] Any base URL: ``_<prefix>_energy_above_hull`` / ``_e_above_hull`` /
   ``_hull_distance`` and ``_<prefix>_band_gap`` / ``_bandgap`` are used when the provider's
   ``/info/structures`` lists them (the test server serves ``_exmpl_energy_above_hull`` and
   ``_exmpl_band_gap``); otherwise (i) and (iv) are ``no``.
.. [2] MP's OPTIMADE serves the hull energy nested in ``_mp_stability`` under a key with a
   ``+`` (``gga_gga+u_r2scan``) that the filter grammar cannot name.
.. [3] MP's OPTIMADE serves no band gap: use ``--source mp`` (mp-api) for the full criteria.
.. [4] The known-dielectric list holds MP ids; other providers' ids never match it.

Disorder: ``NOT structure_features HAS ANY "disorder","implicit_atoms","assemblies"`` on the
server, and every structure must convert to an ordered pymatgen ``Structure`` on the client
(a partially occupied entry becomes a failure, never a candidate).

Resuming: each fetched page is written atomically to
``<cache_dir>/<provider>-<query hash>/page-NNNNNN.json.gz`` and then the paging position
(the page count and the server's ``links.next``) to ``state.json`` in the same folder. A fetch
that is interrupted restarts from the saved ``links.next``; pages already on disk are read
back, never fetched again, and entries are de-duplicated by id. Transient HTTP failures
(connection errors, timeouts, 429 and 5xx) are retried with exponential back-off.

A hostile or broken provider cannot make a fetch run for ever: every request must deliver its
whole answer within a deadline and under a byte cap
(:mod:`anisoscreen.candidates.bounded_http`), paging stops with a warning at a loop or at
more pages than the provider announced (:mod:`anisoscreen.candidates.paging_guard`), and
the stop is saved, so a rerun reads the pages kept and fetches nothing. The server's text
reaches messages only through :func:`anisoscreen.safe_text.safe_text`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from anisoscreen.candidates.bounded_http import (
    DeadlineExceededError,
    HttpReply,
    ReplyTooLargeError,
    bounded_get,
)
from anisoscreen.candidates.json_cache import read_json_gz, write_json_gz_atomic
from anisoscreen.candidates.paging_guard import PagingGuard, page_limit_from
from anisoscreen.errors import AnisoscreenError, AnisoscreenWarning, SourceError
from anisoscreen.handedness import right_handed
from anisoscreen.safe_text import safe_text
from anisoscreen.schemas import CandidateDoc

__all__ = [
    "PROVIDERS",
    "OptimadeFetch",
    "OptimadePage",
    "OptimadeProvider",
    "OptimadeQuery",
    "OptimadeRequestError",
    "build_filter",
    "criteria_placement",
    "is_optimade_source",
    "resolve_provider",
]

LOGGER = logging.getLogger(__name__)

NOBLE_GASES_AND_H = ("H", "He", "Ne", "Ar", "Kr", "Xe", "Rn", "Og")
EXCLUDED_FEATURES = ("disorder", "implicit_atoms", "assemblies")
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
_IDENTIFIER = re.compile(r"^[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$")
_MP_ID = re.compile(r"^(mp|mvc)-\d+$")
MAX_DETAIL = 4000
"""Characters of a server's error text kept (it is cut further where it is shown)."""


@dataclass(frozen=True)
class OptimadeProvider:
    """An OPTIMADE database and the names under which it serves stability and band gap.

    Parameters
    ----------
    name
        Short name (``--source optimade:NAME``).
    base_url
        The provider's OPTIMADE base URL (``/v1/structures`` is appended).
    stability
        Candidate property names of the energy above the convex hull (eV/atom), first served
        wins; a dotted name reads a nested value.
    band_gap
        Candidate property names of the band gap (eV).
    """

    name: str
    base_url: str
    stability: tuple[str, ...] = ()
    band_gap: tuple[str, ...] = ()


PROVIDERS: dict[str, OptimadeProvider] = {
    p.name: p
    for p in (
        OptimadeProvider(
            "alexandria",
            "https://alexandria.icams.rub.de/pbe",
            ("_alexandria_hull_distance", "_alexandria_e_above_hull"),
            ("_alexandria_band_gap",),
        ),
        OptimadeProvider(
            "alexandria-pbesol",
            "https://alexandria.icams.rub.de/pbesol",
            ("_alexandria_hull_distance", "_alexandria_e_above_hull"),
            ("_alexandria_band_gap",),
        ),
        OptimadeProvider(
            "alexandria-scan",
            "https://alexandria.icams.rub.de/scan",
            ("_alexandria_hull_distance", "_alexandria_e_above_hull"),
            ("_alexandria_band_gap",),
        ),
        OptimadeProvider(
            "mp",
            "https://optimade.materialsproject.org",
            ("_mp_stability.gga_gga+u_r2scan.energy_above_hull",),
            (),
        ),
        OptimadeProvider(
            "oqmd", "https://oqmd.org/optimade", ("_oqmd_stability",), ("_oqmd_band_gap",)
        ),
        OptimadeProvider(
            "gnome",
            "https://optimade-gnome.odbx.science",
            ("_gnome_hull_distance",),
            ("_gnome_bandgap", "_gnome_band_gap"),
        ),
        OptimadeProvider(
            "odbx",
            "https://optimade.odbx.science",
            ("_odbx_thermodynamics.hull_distance",),
            (),
        ),
        OptimadeProvider("jarvis", "https://jarvis.nist.gov/optimade/jarvisdft"),
        OptimadeProvider("cod", "https://www.crystallography.net/cod/optimade"),
        OptimadeProvider("nomad", "https://nomad-lab.eu/prod/v1/optimade"),
    )
}


def is_optimade_source(source: str) -> bool:
    """Whether ``source`` names an OPTIMADE source (``optimade:...`` or a provider name)."""
    return source.startswith("optimade:") or (source in PROVIDERS and source != "mp")


def resolve_provider(source: str) -> OptimadeProvider:
    """The provider of ``optimade:NAME``, ``optimade:URL`` or ``NAME``."""
    spec = source.removeprefix("optimade:")
    if spec in PROVIDERS:
        return PROVIDERS[spec]
    if re.match(r"^https?://", spec):
        url = spec.rstrip("/")
        url = re.sub(r"/v1(/structures)?$", "", url)
        return OptimadeProvider(url, url)
    known = ", ".join(sorted(PROVIDERS))
    raise AnisoscreenError(f"unknown OPTIMADE source {source!r}: give a URL or one of {known}")


@dataclass(frozen=True)
class OptimadeQuery:
    """The criteria pushed to the server, taken from ``ScreeningCriteria``.

    Parameters
    ----------
    max_sites
        Keep fewer sites than this.
    max_energy_above_hull
        eV/atom, exclusive (used where the provider serves a hull energy).
    min_band_gap
        eV, exclusive (used where the provider serves a band gap).
    elements
        Elements a structure may contain (the model's), or ``None`` for any.
    exclude_noble_gas_hydrogen_only
        Require at least one element besides H and the noble gases.
    page_limit
        Entries requested per page (the server may cap it).
    """

    max_sites: int | None = 40
    max_energy_above_hull: float | None = 0.050
    min_band_gap: float | None = 0.5
    elements: tuple[str, ...] | None = None
    exclude_noble_gas_hydrogen_only: bool = True
    page_limit: int = 100

    @classmethod
    def from_criteria(cls, criteria: Any = None, page_limit: int = 100) -> OptimadeQuery:
        """The server-side part of a :class:`~anisoscreen.candidates.filters.ScreeningCriteria`."""
        if criteria is None:
            return cls(page_limit=page_limit)
        elements = criteria.model_elements
        return cls(
            max_sites=criteria.max_sites,
            max_energy_above_hull=criteria.max_energy_above_hull,
            min_band_gap=criteria.min_band_gap,
            elements=tuple(sorted(elements)) if elements is not None else None,
            exclude_noble_gas_hydrogen_only=criteria.exclude_noble_gas_hydrogen_only,
            page_limit=page_limit,
        )


@dataclass(frozen=True)
class ServedFields:
    """The provider's names of the mapped quantities (``None``: not served)."""

    stability: str | None = None
    band_gap: str | None = None

    def response_fields(self) -> list[str]:
        """Top-level properties to request besides the structure."""
        return [name.split(".")[0] for name in (self.stability, self.band_gap) if name]


def _quoted(symbols: list[str]) -> str:
    return ",".join(f'"{s}"' for s in symbols)


def _all_elements() -> list[str]:
    from pymatgen.core.periodic_table import Element

    return [e.symbol for e in Element]


def build_filter(query: OptimadeQuery, fields: ServedFields) -> str:
    """The OPTIMADE filter of ``query``, checked against the OPTIMADE grammar."""
    from optimade.filterparser import LarkParser

    parts = [f"NOT structure_features HAS ANY {_quoted(list(EXCLUDED_FEATURES))}"]
    if query.max_sites is not None:
        parts.append(f"nsites<{query.max_sites}")
    everything = _all_elements()
    allowed = list(query.elements) if query.elements is not None else everything
    if query.elements is not None:
        forbidden = [e for e in everything if e not in set(allowed)]
        if forbidden:
            parts.append(f"NOT elements HAS ANY {_quoted(forbidden)}")
    if query.exclude_noble_gas_hydrogen_only:
        others = [e for e in allowed if e not in NOBLE_GASES_AND_H]
        parts.append(f"elements HAS ANY {_quoted(others)}" if others else 'elements HAS "X"')
    if query.max_energy_above_hull is not None and _filterable(fields.stability):
        parts.append(f"{fields.stability}<{query.max_energy_above_hull!r}")
    if query.min_band_gap is not None and _filterable(fields.band_gap):
        parts.append(f"{fields.band_gap}>{query.min_band_gap!r}")
    text = " AND ".join(parts)
    LarkParser(version=(1, 1, 0)).parse(text)  # raises on anything the grammar rejects
    return text


def _filterable(name: str | None) -> bool:
    return name is not None and bool(_IDENTIFIER.match(name))


def criteria_placement(query: OptimadeQuery, fields: ServedFields) -> dict[str, str]:
    """Where each screening criterion runs for this provider: ``server``, ``client`` or ``no``.

    ``server`` criteria are in the OPTIMADE filter and are applied again on the client.
    """

    def quantity(name: str | None) -> str:
        if name is None:
            return "no"
        return "server" if _filterable(name) else "client"

    return {
        "energy_above_hull": quantity(fields.stability),
        "noble_gas_or_hydrogen_only": "server",
        "num_sites": "server",
        "band_gap": quantity(fields.band_gap),
        "known_dielectric": "client (MP ids only)",
        "unseen_elements": "server" if query.elements is not None else "client",
        "disorder": "server",
    }


@dataclass(frozen=True)
class RetryPolicy:
    """How transient HTTP failures are retried.

    Parameters
    ----------
    retries
        Extra attempts after the first.
    backoff
        Attempt ``k`` waits ``backoff * 2**k`` seconds (or the server's ``Retry-After``).
    timeout
        Seconds to connect, and for each wait for bytes.
    deadline
        Seconds for a whole answer (a server that trickles bytes is cut off).
    max_bytes
        Largest page accepted, in bytes (a larger one is an error, not retried).
    sleep
        The waiting function.
    """

    retries: int = 5
    backoff: float = 1.0
    timeout: float = 60.0
    deadline: float = 300.0
    max_bytes: int = 32 * 2**20
    sleep: Callable[[float], None] = time.sleep


class OptimadeRequestError(AnisoscreenError):
    """The provider rejected a request (HTTP 4xx other than 429); ``detail`` says why."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"OPTIMADE request {safe_text(url, 200)} failed: {safe_text(detail)}")
        self.detail = detail


class _TransientError(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    import urllib3

    return (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        urllib3.exceptions.HTTPError,  # a body read one socket read at a time raises these
        DeadlineExceededError,
    )


def _get_json(session: Any, url: str, retry: RetryPolicy) -> dict[str, Any]:
    """GET ``url`` as JSON, retrying transient failures; a 4xx is a clean error at once.

    Every attempt must deliver its whole answer within ``retry.deadline`` seconds and
    ``retry.max_bytes`` bytes; the server's text reaches messages only through
    :func:`~anisoscreen.safe_text.safe_text`.
    """
    import requests

    shown = safe_text(url, 200)
    transient = _transient_errors()
    for attempt in range(retry.retries + 1):
        try:
            try:
                response = bounded_get(
                    session,
                    url,
                    read_timeout=retry.timeout,
                    deadline=retry.deadline,
                    max_bytes=retry.max_bytes,
                )
            except transient as exc:
                raise _TransientError(f"{type(exc).__name__}: {safe_text(exc)}") from None
            except requests.RequestException as exc:  # e.g. a next link that is no URL
                raise SourceError(
                    f"OPTIMADE request {shown} failed: {type(exc).__name__}: {safe_text(exc)}"
                ) from None
            except ReplyTooLargeError as exc:
                raise SourceError(
                    f"OPTIMADE request {shown} failed: the answer is larger than the "
                    f"{retry.max_bytes / 2**20:g} MiB cap per page ({exc})"
                ) from None
            if response.status_code == 429 or response.status_code >= 500:
                after = response.headers.get("Retry-After")
                wait = float(after) if after and after.isdigit() else None
                raise _TransientError(f"HTTP {response.status_code}", wait)
            if response.status_code >= 400:
                raise OptimadeRequestError(url, _error_detail(response))
            try:
                body = response.json()
            except ValueError as exc:
                raise _TransientError(f"invalid JSON: {safe_text(exc)}") from None
            if not isinstance(body, dict):
                raise _TransientError("invalid JSON: not an object")
            return body
        except _TransientError as exc:
            if attempt == retry.retries:
                raise SourceError(
                    f"OPTIMADE request {shown} failed after {retry.retries + 1} attempts: {exc}"
                ) from None
            wait = exc.wait if exc.wait is not None else retry.backoff * 2**attempt
            LOGGER.warning("OPTIMADE request failed (%s); retrying in %.1f s", exc, wait)
            retry.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _error_detail(response: HttpReply) -> str:
    """The server's reason for a 4xx (raw: it is made safe where it is shown)."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(str(e.get("detail") or e.get("title")) for e in errors)
        return text[:MAX_DETAIL] or response.text[:MAX_DETAIL]
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"


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
    retry: RetryPolicy = field(default_factory=RetryPolicy)
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
            self._info = _get_json(
                self.session, f"{self.provider.base_url}/v1/info/structures", self.retry
            )
        return self._info

    def _provider_prefix(self) -> str:
        info = _get_json(self.session, f"{self.provider.base_url}/v1/info", self.retry)
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
                body = _get_json(self.session, url, self.retry)
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
            energy_above_hull=_number(_nested(attributes, fields.stability)),
            band_gap=_number(_nested(attributes, fields.band_gap)),
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


def _nested(attributes: dict[str, Any], name: str | None) -> Any:
    if name is None:
        return None
    value: Any = attributes
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


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

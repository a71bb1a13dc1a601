"""Guards against a paged source that never ends: a loop, or more pages than it announced.

A provider's ``links.next`` may point back to a page already read, serve the same entries
again under a new address, or keep serving pages past the number of entries it announced.
:class:`PagingGuard` sees every page, as it is fetched or read back from the page cache, and
says why paging must stop (or ``None``):

- ``links.next`` is an address already fetched;
- a page holds only ids already seen;
- there are more pages than ``ceil(data_returned / page size)`` plus a slack
  (``max(MIN_SLACK_PAGES, 10 %)``), counted from the first page's ``data_returned``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MIN_SLACK_PAGES", "PagingGuard", "link_key", "page_limit_from"]

MIN_SLACK_PAGES = 3
"""Pages allowed beyond the announced count (at least; 10 % for long fetches)."""


def link_key(url: str) -> str:
    """A short, stable key of an address (kept in the paging state)."""
    return hashlib.sha1(url.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def page_limit_from(total: object, page_size: int) -> int | None:
    """Most pages allowed for ``total`` entries served ``page_size`` at a time (``None``: any)."""
    if not isinstance(total, int) or isinstance(total, bool) or total < 0 or page_size <= 0:
        return None
    expected = -(-total // page_size)
    return expected + max(MIN_SLACK_PAGES, expected // 10)


@dataclass
class PagingGuard:
    """What a paged fetch has seen, and whether the next page or link is a loop.

    Parameters
    ----------
    max_pages
        Most pages allowed (``None``: not known yet).
    links
        Keys (:func:`link_key`) of the addresses already fetched.
    """

    max_pages: int | None = None
    links: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)

    def page_problem(self, number: int, ids: Iterable[str]) -> str | None:
        """Why page ``number`` (0-based) with these entry ids ends paging, or ``None``."""
        ids = list(ids)
        if self.max_pages is not None and number >= self.max_pages:
            return (
                f"the provider served more than {self.max_pages} pages, more than the entries "
                "it announced (data_returned) can fill"
            )
        if ids and self.ids.issuperset(ids):
            return f"page {number + 1} holds only entries already read (a paging loop)"
        self.ids.update(ids)
        return None

    def fetched(self, url: str) -> None:
        """Note that ``url`` was fetched."""
        self.links.add(link_key(url))

    def next_problem(self, next_url: str | None) -> str | None:
        """Why following ``next_url`` ends paging, or ``None``."""
        if next_url and link_key(next_url) in self.links:
            return "links.next points back to a page already fetched (a paging loop)"
        return None

"""One writer per campaign: a step lock, a revision checked at every save, a safe name.

- :func:`campaign_folder` is ``<data_dir>/campaigns/<name>``; a name is a slug (letters,
  digits, ``.``, ``_``, ``-``; no path separators, no ``..``), so it never escapes the folder.
- :func:`step_lock` holds an exclusive OS lock on ``<folder>/step.lock`` for a whole
  ``campaign step``; a second step of the same campaign stops at once with one line. The
  kernel drops the lock when its process dies, even by ``kill -9``.
- :func:`save_campaign` is a compare-and-set on ``CampaignDoc.revision``: a process whose
  copy of the campaign is stale (another one saved since it read it, e.g. from another
  machine that shares the MongoDB store) stops before it submits anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from anisoscreen.errors import AnisoscreenError, StoreError
from anisoscreen.schemas import CampaignDoc, utcnow
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store import ResultsStore

__all__ = [
    "NAME_PATTERN",
    "CampaignConflictError",
    "campaign_folder",
    "check_name",
    "save_campaign",
    "step_lock",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A campaign name: 1-64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit."""


class CampaignConflictError(StoreError):
    """Another process is stepping the campaign, or saved it since this one read it."""


def check_name(name: str) -> str:
    """``name`` if it is a valid campaign name; else one-line :class:`AnisoscreenError`."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise AnisoscreenError(
            f"invalid campaign name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def campaign_folder(settings: AnisoscreenSettings, name: str) -> Path:
    """``<data_dir>/campaigns/<name>``: the campaign's cache and lock."""
    return settings.data_dir / "campaigns" / check_name(name)


@contextmanager
def step_lock(settings: AnisoscreenSettings, name: str) -> Iterator[Path]:
    """Hold the campaign's step lock (never waits); yields the lock file.

    Raises
    ------
    CampaignConflictError
        Another process holds it.
    """
    folder = campaign_folder(settings, name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the campaign folder {folder}: {exc.strerror}") from exc
    path = folder / "step.lock"
    lock = FileLock(str(path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise CampaignConflictError(
            f"campaign {name} is being stepped by another process (lock {path}); "
            "nothing was done here: step again when it has finished"
        ) from None
    try:
        yield path
    finally:
        lock.release()


def save_campaign(doc: CampaignDoc, results: ResultsStore, *, new: bool = False) -> None:
    """Store ``doc`` if the stored campaign is still the revision ``doc`` was read at.

    ``new``: store it only if no campaign of that name exists. On success ``doc.revision``
    is the stored revision.

    Raises
    ------
    CampaignConflictError
        The stored campaign changed since ``doc`` was read (or exists, with ``new``).
    """
    expected = None if new else doc.revision
    doc.revision = 0 if new else doc.revision + 1
    doc.last_updated = utcnow()
    if not results.replace_if(doc, "revision", expected):
        doc.revision = expected or 0
        if new:
            raise CampaignConflictError(f"campaign {doc.name!r} exists; use `campaign step`")
        raise CampaignConflictError(
            f"campaign {doc.name} was changed by another process since this one read it "
            f"(revision {expected}); this step stopped here: check `campaign status`, then "
            "step again"
        )

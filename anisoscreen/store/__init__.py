"""Results stores: the embedded SQLite engine, MongoDB and maggma stores, behind one API.

- :mod:`~anisoscreen.store.results`: :class:`ResultsStore`, typed upserts and queries;
- :mod:`~anisoscreen.store.backends`: the maggma store (and jobflow ``JobStore``) a setting
  names;
- :mod:`~anisoscreen.store.sqlite`: the embedded engine, with :mod:`~anisoscreen.store.sql`
  (criteria as SQL) and :mod:`~anisoscreen.store.codec` (documents as JSON);
- :mod:`~anisoscreen.store.health`, :mod:`~anisoscreen.store.lock`: checks and the legacy lock;
- :mod:`~anisoscreen.store.migrate`: a montydb store copied into the embedded engine.
"""

from anisoscreen.store.backends import (
    StoreConfigError,
    build_job_store,
    build_store,
    mongo_store,
)
from anisoscreen.store.layout import COLLECTIONS
from anisoscreen.store.results import ResultsStore, open_results
from anisoscreen.store.sqlite import SQLiteStore

__all__ = [
    "COLLECTIONS",
    "ResultsStore",
    "SQLiteStore",
    "StoreConfigError",
    "build_job_store",
    "build_store",
    "mongo_store",
    "open_results",
]

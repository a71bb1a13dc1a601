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

The package: ``providers`` (named providers), ``query`` (the filter), ``client`` (requests,
under the retry policy shared with the MP client, :mod:`anisoscreen.candidates.retry`) and
``paging`` (the resumable fetch).
"""

from __future__ import annotations

from anisoscreen.candidates.optimade.client import OptimadeRequestError
from anisoscreen.candidates.optimade.paging import OptimadeFetch, OptimadePage
from anisoscreen.candidates.optimade.providers import (
    PROVIDERS,
    OptimadeProvider,
    is_optimade_source,
    resolve_provider,
)
from anisoscreen.candidates.optimade.query import (
    OptimadeQuery,
    ServedFields,
    build_filter,
    criteria_placement,
)
from anisoscreen.candidates.retry import RetryPolicy

__all__ = [
    "PROVIDERS",
    "OptimadeFetch",
    "OptimadePage",
    "OptimadeProvider",
    "OptimadeQuery",
    "OptimadeRequestError",
    "RetryPolicy",
    "ServedFields",
    "build_filter",
    "criteria_placement",
    "is_optimade_source",
    "resolve_provider",
]

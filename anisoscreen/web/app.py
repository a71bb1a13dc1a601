"""The results browser: a read-only FastAPI app of REST resources and server-rendered pages.

:func:`create_app` builds it over one results store; :func:`serve` runs it with uvicorn
(bound to 127.0.0.1 unless told otherwise), answering only trusted ``Host`` headers, with
security headers on every response (:mod:`anisoscreen.web.security`). ``maggma.api``
(``API``, ``ReadOnlyResource``) is deprecated in the installed maggma (0.77: "migrate to
emmet-api"), so the resources are
plain FastAPI routes with pydantic query and response models in the same style: validated
query operators, a ``data``/``meta`` envelope, OpenAPI docs at ``/docs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from anisoscreen import __version__
from anisoscreen.settings import AnisoscreenSettings
from anisoscreen.store import ResultsStore

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
HERE = Path(__file__).parent
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _training_ratios(settings: AnisoscreenSettings) -> Callable[[], Sequence[float] | None]:
    @lru_cache(maxsize=1)
    def load() -> Sequence[float] | None:
        from anisoscreen.errors import AnisoscreenError
        from anisoscreen.report.figures import training_anisotropy_ratios

        try:
            return training_anisotropy_ratios(shared=settings.shared).tolist()
        except AnisoscreenError:
            return None

    return load


def create_app(
    settings: AnisoscreenSettings,
    *,
    results: ResultsStore | None = None,
    refresh_s: float = 30.0,
    hosts: frozenset[str] | None = None,
    optimade_base_url: str | None = None,
    optimade: bool = True,
) -> FastAPI:
    """Build the app over the store of ``settings`` (or an open ``results`` store).

    Parameters
    ----------
    settings
        Where the store lives (and the shared data, for the training-set histogram).
    results
        An already open store to serve (tests, in-memory stores); not closed by the app.
    refresh_s
        Seconds after which the in-memory snapshot of the store is read again.
    hosts
        Host names the server answers to (:func:`~anisoscreen.web.security.allowed_hosts`);
        ``None`` skips the check (the security headers are always sent).
    optimade_base_url
        Public URL of the ``/optimade`` mount, for the links of paged OPTIMADE answers.
    optimade
        Mount the OPTIMADE API (:mod:`anisoscreen.web.optimade_server`) at ``/optimade``.
    """
    from anisoscreen.report.html import template_environment
    from anisoscreen.web import api, api_docs, pages
    from anisoscreen.web.security import security_middleware
    from anisoscreen.web.snapshot import ResultsView

    owned = results is None
    store = results if results is not None else ResultsStore(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio.to_thread

        await anyio.to_thread.run_sync(app.state.view.snapshot)  # read the store before serving
        yield
        if owned:
            store.close()

    app = FastAPI(
        title="anisoscreen results API",
        version=__version__,
        description="Read-only access to screened candidates, predictions, DFT validations "
        "and screening runs. List endpoints return `{data, meta}`; page sizes are capped at "
        "500; every parameter is validated.",
        lifespan=lifespan,
        docs_url=None,  # served from vendored assets by api_docs (no CDN)
        redoc_url=None,
    )
    app.state.view = ResultsView(store, refresh_s=refresh_s)
    app.state.templates = template_environment(HERE / "templates")
    app.state.training_ratios = _training_ratios(settings)

    @app.middleware("http")
    async def read_only(request: Request, call_next):
        if request.method not in READ_METHODS:
            return JSONResponse(
                {"detail": "this server is read-only"}, status_code=405, headers={"Allow": "GET"}
            )
        return await call_next(request)

    app.middleware("http")(security_middleware(hosts))  # added last: runs first
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(api_docs.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if optimade:
        _mount_optimade(app, optimade_base_url)
    return app


def _mount_optimade(app: FastAPI, base_url: str | None) -> None:
    """Mount the OPTIMADE API at ``/optimade`` (skipped, with a warning, without its server)."""
    import logging

    try:
        from anisoscreen.web.optimade_server import create_optimade_app

        optimade_app = create_optimade_app(app.state.view, base_url)
    except ImportError as exc:  # optimade installed without its server extras
        logging.getLogger(__name__).warning("no /optimade: %s", exc)
        return
    app.mount("/optimade", optimade_app, name="optimade")


def serve(
    settings: AnisoscreenSettings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    refresh_s: float = 30.0,
    allow_hosts: Sequence[str] = (),
) -> None:
    """Run the app with uvicorn until interrupted.

    Only requests whose ``Host`` is the bind address (or, on loopback, ``localhost``) or one
    of ``allow_hosts`` are answered (see :mod:`anisoscreen.web.security`).
    """
    import uvicorn

    from anisoscreen.web.security import allowed_hosts

    store = ResultsStore(settings)
    try:
        store.check()  # an unusable store fails here, as one line, not in uvicorn's startup
        url_host = f"[{host}]" if ":" in host else host
        app = create_app(
            settings,
            results=store,
            refresh_s=refresh_s,
            hosts=allowed_hosts(host, allow_hosts),
            optimade_base_url=f"http://{url_host}:{port}/optimade",
        )
        app.state.view.snapshot()  # the first read, before the server starts
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        store.close()

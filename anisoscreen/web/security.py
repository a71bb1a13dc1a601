"""HTTP hardening of the results browser: a trusted-host check and security headers.

- **Trusted hosts.** A request whose ``Host`` header names a host outside the allow-list gets
  a 400 (DNS rebinding: a hostile page cannot make a browser talk to the server under its
  own name). :func:`allowed_hosts` builds the list from the bind address (a loopback bind
  also admits ``localhost``, ``127.0.0.1`` and ``::1``; a wildcard bind admits this machine's
  names) plus the names given with ``serve --allow-host``.
- **Headers.** Every response carries a Content-Security-Policy that runs only scripts served
  from ``/static`` (the vendored 3Dmol.js and the pages' own files) and forbids framing,
  plus ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and
  ``Referrer-Policy: no-referrer``. ``/docs`` and ``/redoc`` load the vendored Swagger UI and
  ReDoc from ``/static/vendor`` (no CDN); they only add ``blob:`` workers (ReDoc's search).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

__all__ = [
    "DOCS_CSP",
    "PAGE_CSP",
    "SECURITY_HEADERS",
    "allowed_hosts",
    "host_of",
    "security_middleware",
]

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""Policy of every response but the API docs: scripts only from this server."""

DOCS_CSP = PAGE_CSP + "; worker-src 'self' blob:"
"""Policy of ``/docs`` and ``/redoc``: the page policy plus ReDoc's ``blob:`` worker."""

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _normalise(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a server bound to ``bind`` answers to, plus ``extra`` (``*`` allows all)."""
    hosts = {_normalise(bind), *(_normalise(h) for h in extra if h.strip())}
    try:
        address = ipaddress.ip_address(_normalise(bind))
    except ValueError:
        address = None
    if _normalise(bind) == "localhost" or (address is not None and address.is_loopback):
        hosts.update(_LOOPBACK_NAMES)
    if address is not None and address.is_unspecified:  # 0.0.0.0 or ::: every interface
        hosts.discard(_normalise(bind))
        hosts.update(_LOOPBACK_NAMES)
        hosts.update(_normalise(n) for n in (socket.gethostname(), socket.getfqdn()) if n)
    return frozenset(hosts)


def host_of(header: str) -> str:
    """The host of a ``Host`` header, without port or IPv6 brackets, lower case."""
    header = header.strip()
    if header.startswith("["):
        return _normalise(header[: header.find("]") + 1] if "]" in header else header)
    return _normalise(header.rsplit(":", 1)[0] if header.count(":") == 1 else header)


def security_middleware(
    hosts: frozenset[str] | None,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """An HTTP middleware: the trusted-host check (``hosts=None``: none) and the headers."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if hosts is not None and "*" not in hosts:
            host = host_of(request.headers.get("host", ""))
            if host not in hosts:
                response: Response = PlainTextResponse(
                    "invalid Host header: `anisoscreen serve --allow-host NAME` accepts NAME",
                    status_code=400,
                )
                _add_headers(request, response)
                return response
        response = await call_next(request)
        _add_headers(request, response)
        return response

    return middleware


def _add_headers(request: Request, response: Response) -> None:
    csp = DOCS_CSP if request.url.path in DOCS_PATHS else PAGE_CSP
    response.headers.setdefault("Content-Security-Policy", csp)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)

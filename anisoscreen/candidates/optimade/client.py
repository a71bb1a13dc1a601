"""The OPTIMADE HTTP client: bounded requests under the shared retry policy."""

from __future__ import annotations

import logging
from typing import Any

from anisoscreen.candidates.bounded_http import (
    DeadlineExceededError,
    HttpReply,
    ReplyTooLargeError,
    bounded_get,
)
from anisoscreen.candidates.retry import RetryPolicy, TransientError
from anisoscreen.errors import AnisoscreenError, SourceError
from anisoscreen.safe_text import safe_text

__all__ = [
    "MAX_DETAIL",
    "OptimadeRequestError",
    "get_json",
]

LOGGER = logging.getLogger(__name__)
MAX_DETAIL = 4000
"""Characters of a server's error text kept (it is cut further where it is shown)."""


class OptimadeRequestError(AnisoscreenError):
    """The provider rejected a request (HTTP 4xx other than 429); ``detail`` says why."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"OPTIMADE request {safe_text(url, 200)} failed: {safe_text(detail)}")
        self.detail = detail


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


def get_json(session: Any, url: str, retry: RetryPolicy) -> dict[str, Any]:
    """GET ``url`` as JSON, retrying transient failures; a 4xx is a clean error at once.

    Every attempt must deliver its whole answer within ``retry.deadline`` seconds and
    ``retry.max_bytes`` bytes; the server's text reaches messages only through
    :func:`~anisoscreen.safe_text.safe_text`. Connection errors, timeouts, 429, 5xx and
    invalid JSON are retried by ``retry`` (:class:`~anisoscreen.candidates.retry.RetryPolicy`).
    """
    import requests

    shown = safe_text(url, 200)
    transient = _transient_errors()

    def attempt() -> dict[str, Any]:
        try:
            response = bounded_get(
                session,
                url,
                read_timeout=retry.timeout,
                deadline=retry.deadline,
                max_bytes=retry.max_bytes,
            )
        except transient as exc:
            raise TransientError(f"{type(exc).__name__}: {safe_text(exc)}") from None
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
            raise TransientError(f"HTTP {response.status_code}", wait)
        if response.status_code >= 400:
            raise OptimadeRequestError(url, _error_detail(response))
        try:
            body = response.json()
        except ValueError as exc:
            raise TransientError(f"invalid JSON: {safe_text(exc)}") from None
        if not isinstance(body, dict):
            raise TransientError("invalid JSON: not an object")
        return body

    def give_up(message: str) -> SourceError:
        return SourceError(
            f"OPTIMADE request {shown} failed after {retry.retries + 1} attempts: {message}"
        )

    def on_retry(message: str, wait: float) -> None:
        LOGGER.warning("OPTIMADE request failed (%s); retrying in %.1f s", message, wait)

    return retry.run(attempt, give_up, on_retry)


def _error_detail(response: HttpReply) -> str:
    """The server's reason for a 4xx (raw: it is made safe where it is shown)."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(str(e.get("detail") or e.get("title")) for e in errors)
        return text[:MAX_DETAIL] or response.text[:MAX_DETAIL]
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"

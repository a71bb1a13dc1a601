"""HTTP GETs with a total deadline and a byte cap, for servers that cannot be trusted to end.

``requests``' timeout bounds each wait for bytes, not the whole answer: a server that sends
one byte every 20 s keeps a 60 s timeout happy for ever, and a 200 MB page is read into
memory whole. :func:`bounded_get` reads the answer in a worker thread, one socket read at a
time, and gives up when the whole answer took longer than ``deadline`` seconds
(:class:`DeadlineExceededError`) or grew past ``max_bytes`` (:class:`ReplyTooLargeError`).
An abandoned worker stops at its next read and keeps nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeadlineExceededError", "HttpReply", "ReplyTooLargeError", "bounded_get"]

_CHUNK = 1 << 16


class DeadlineExceededError(Exception):
    """The whole answer did not arrive within the deadline."""


class ReplyTooLargeError(Exception):
    """The answer is larger than the byte cap."""


@dataclass(frozen=True)
class HttpReply:
    """A complete answer: status, headers and body (at most the byte cap)."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    """The response's headers (``requests``' case-insensitive mapping)."""
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (``ValueError`` when it is not)."""
        import json

        return json.loads(self.body)


def _read(response: Any, max_bytes: int, cancelled: threading.Event) -> bytes | None:
    """The body of ``response``, one socket read at a time; ``None`` once cancelled."""
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ReplyTooLargeError(f"the server announces {int(length)} bytes")
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    chunks = (
        iter(lambda: read1(_CHUNK, decode_content=True), b"")
        if read1 is not None
        else response.iter_content(_CHUNK)
    )
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        if cancelled.is_set():
            return None
        size += len(chunk)
        if size > max_bytes:
            raise ReplyTooLargeError(f"more than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def bounded_get(
    session: Any, url: str, *, read_timeout: float, deadline: float, max_bytes: int
) -> HttpReply:
    """GET ``url`` with ``session``; the whole answer within ``deadline`` s and ``max_bytes``.

    Parameters
    ----------
    session
        A ``requests.Session``.
    url
        The address.
    read_timeout
        Seconds to connect, and for each wait for bytes.
    deadline
        Seconds for the whole answer, headers and body.
    max_bytes
        Largest body accepted (after content decoding).

    Raises
    ------
    DeadlineExceededError, ReplyTooLargeError
        As named; ``requests`` exceptions (connection errors, timeouts) pass through.
    """
    cancelled = threading.Event()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with session.get(url, timeout=read_timeout, stream=True) as response:
                body = _read(response, max_bytes, cancelled)
                if body is not None:
                    outcome["reply"] = HttpReply(response.status_code, response.headers, body)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="bounded-get", daemon=True).start()
    if not done.wait(deadline):
        cancelled.set()
        raise DeadlineExceededError(f"no complete answer within {deadline:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["reply"]

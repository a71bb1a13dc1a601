"""The one retry policy of the remote sources (the Materials Project API and OPTIMADE).

A request is tried ``retries + 1`` times; attempt ``k`` that fails transiently waits
``backoff * 2**k`` seconds (or the server's ``Retry-After``) before the next. What counts as
transient is the caller's: it raises :class:`TransientError`; anything else ends the request at
once. The last failure becomes one clean error, with ``secret`` (an API key) masked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["MP_RETRY", "OPTIMADE_RETRY", "RetryPolicy", "TransientError"]

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying; ``wait`` (seconds) overrides the back-off (``Retry-After``)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures of a remote source are retried.

    Parameters
    ----------
    retries
        Extra attempts after the first.
    backoff
        Attempt ``k`` waits ``backoff * 2**k`` seconds (or the server's ``Retry-After``).
    sleep
        The waiting function (replaced in tests).
    secret
        A string (the API key) that must never appear in error messages.
    timeout
        HTTP sources: seconds to connect, and for each wait for bytes.
    deadline
        HTTP sources: seconds for a whole answer (a server that trickles bytes is cut off).
    max_bytes
        HTTP sources: largest answer accepted, in bytes (a larger one is an error, not
        retried).
    """

    retries: int = 4
    backoff: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    secret: str | None = None
    timeout: float = 60.0
    deadline: float = 300.0
    max_bytes: int = 32 * 2**20

    def redact(self, text: str) -> str:
        """``text`` with the secret masked."""
        return text.replace(self.secret, "***") if self.secret else text

    def run(
        self,
        attempt: Callable[[], T],
        give_up: Callable[[str], Exception],
        on_retry: Callable[[str, float], None] | None = None,
    ) -> T:
        """``attempt()``, retried on :class:`TransientError`; then ``give_up(message)`` is raised.

        ``on_retry(message, wait)`` is told of each retry before its wait.
        """
        for k in range(self.retries + 1):
            try:
                return attempt()
            except TransientError as exc:
                message = self.redact(str(exc))
                if k == self.retries:
                    raise give_up(message) from None
                wait = exc.wait if exc.wait is not None else self.backoff * 2**k
                if on_retry is not None:
                    on_retry(message, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


MP_RETRY = RetryPolicy(retries=4, backoff=2.0)
"""The Materials Project client's default (``mp-api`` calls: four retries, 2 s doubling)."""
OPTIMADE_RETRY = RetryPolicy(retries=5, backoff=1.0)
"""The OPTIMADE client's default (five retries, 1 s doubling)."""

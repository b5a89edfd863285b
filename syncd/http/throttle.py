"""Throttles: what decides when a source's next request may leave, told what every answer said.

A `SourceClient` holds any number of them. Each attempt calls `acquire()` on every throttle (inside
the source's concurrency limit) before it is sent, and `observe()` exactly once afterwards, with the
answer or with None when there was none (timeout, reset), so a throttle that counts requests in
flight never leaks a slot.
"""

from __future__ import annotations

from typing import Protocol

from aiolimiter import AsyncLimiter

from syncd.http.response import Response


class Throttle(Protocol):
    """Paces one source's requests."""

    async def acquire(self) -> None:
        """Return when one more request may be sent."""
        ...

    def observe(self, response: Response | None) -> None:
        """The answer to a request `acquire` let through (None: no answer arrived)."""
        ...


class RateThrottle:
    """A fixed client-side rate: `rate` requests per second, at most `burst` back to back."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = burst or max(1, round(rate))
        self._limiter = AsyncLimiter(self.burst, self.burst / rate)

    async def acquire(self) -> None:
        """Wait for the leaky bucket to admit one request."""
        await self._limiter.acquire()

    def observe(self, response: Response | None) -> None:
        """A fixed rate ignores what the server says."""

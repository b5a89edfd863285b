"""Request throttles on the injected clock's monotonic time: a token bucket and a fixed call window."""

from __future__ import annotations

import math
from dataclasses import dataclass

from syncd.clock import Clock


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; one request spends one token."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def take(self) -> float | None:
        """None if a token was spent, else the seconds until one will be available."""
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self._rate


@dataclass(frozen=True, slots=True)
class WindowState:
    """The outcome of one call against a `CallWindow`."""

    allowed: bool
    used: int
    limit: int
    reset_in: float

    @property
    def header(self) -> str:
        """The `X-AC-Call-Limit` value: calls used in this window / calls allowed."""
        return f"{self.used}/{self.limit}"


class CallWindow:
    """At most `limit` calls per fixed `window` seconds, windows counted from creation."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._origin = clock.monotonic()
        self._index = 0
        self._used = 0

    def hit(self) -> WindowState:
        """Count one call (refused calls are not counted)."""
        elapsed = self._clock.monotonic() - self._origin
        index = math.floor(elapsed / self._window)
        if index != self._index:
            self._index = index
            self._used = 0
        reset_in = (index + 1) * self._window - elapsed
        if self._used >= self._limit:
            return WindowState(False, self._used, self._limit, reset_in)
        self._used += 1
        return WindowState(True, self._used, self._limit, reset_in)

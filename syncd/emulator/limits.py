"""Request throttles on the injected clock's monotonic time: a token bucket and a fixed call window."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from syncd.clock import Clock

_KEPT = 4096


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
    """At most `limit` calls per fixed `window` seconds, windows counted from creation.

    `other_calls` is another app installed on the store: it makes that many calls in every
    window, at moments drawn from `rng` (seeded: repeatable, yet not predictable by a client).
    Its calls are counted when the window is next looked at, in time order, so the count a client
    reads includes every call the other app made before it; those refused are `other_refused`.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Clock,
        *,
        other_calls: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        if other_calls < 0:
            raise ValueError("CallWindow.other_calls must be >= 0")
        self._limit = limit
        self._window = window
        self._clock = clock
        self._origin = clock.monotonic()
        self._index = 0
        self._used = 0
        self._other_calls = other_calls
        self._rng = rng or random.Random(0)
        self._other_due: list[float] = self._other_moments()
        self.other_made = 0
        self.other_refused = 0
        # The client's accepted calls by window index (the latest `_KEPT` windows): what a
        # benchmark run used of each window it touched.
        self.client_calls: dict[int, int] = {}

    @property
    def limit(self) -> int:
        """Calls allowed per window."""
        return self._limit

    def _other_moments(self) -> list[float]:
        """When (seconds into the current window) the other app calls, latest first."""
        moments = [self._rng.uniform(0, self._window) for _ in range(self._other_calls)]
        return sorted(moments, reverse=True)

    def _catch_up(self, into: float) -> None:
        """Count the other app's calls made up to `into` seconds into the current window."""
        while self._other_due and self._other_due[-1] <= into:
            self._other_due.pop()
            self.other_made += 1
            if self._used < self._limit:
                self._used += 1
            else:
                self.other_refused += 1

    def hit(self) -> WindowState:
        """Count one call (refused calls are not counted)."""
        elapsed = self._clock.monotonic() - self._origin
        index = math.floor(elapsed / self._window)
        if index != self._index:
            self._catch_up(self._window)  # the rest of the window that ended
            # Windows nobody looked at: their other-app calls all fit (nothing else was called).
            skipped = index - self._index - 1
            self.other_made += skipped * self._other_calls
            self._index = index
            self._used = 0
            self._other_due = self._other_moments()
        self._catch_up(elapsed - index * self._window)
        reset_in = (index + 1) * self._window - elapsed
        if self._used >= self._limit:
            return WindowState(False, self._used, self._limit, reset_in)
        self._used += 1
        self.client_calls[index] = self.client_calls.get(index, 0) + 1
        if len(self.client_calls) > _KEPT:
            del self.client_calls[min(self.client_calls)]
        return WindowState(True, self._used, self._limit, reset_in)

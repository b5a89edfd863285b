"""Pacing by a store's own count: AmeriCommerce's `X-AC-Call-Limit: used/max` per fixed window.

The store counts every call it receives in a window of `window` seconds (10 on AmeriCommerce) and
answers 429 past `max`. Its count is shared with every other app installed on the store, and the
window's phase is not announced. `CallLimitThrottle` keeps an estimate of the current window:

- **Phase.** A response whose `used` is not above that of a response received *before this request
  was sent* proves that a new window began in between: the estimate is re-anchored to the moment
  that response arrived, the latest start consistent with what was seen. Estimating late is the safe
  side: a window believed to end later than it does only makes syncd wait a little longer.
- **Count.** `used` of the latest answer, plus our requests sent after that one that have not been
  answered yet (they are probably not counted in it), plus one for every request admitted since.
  Other apps' calls show up as jumps in `used` and are added the same way.
- **Own share.** syncd's own calls in the window, counted here. `reserve` is what syncd leaves to
  the other apps: its own share is `max - reserve` calls per window, whatever the others do.
- **Admission.** A request leaves at once while syncd's own share is not spent and the window is
  not full by the store's count (`used < max`: other apps' calls only stop syncd when there is
  really no call left). Otherwise one task sleeps until the estimated end of the window and the
  others queue behind it, so a fake clock is advanced once, not once per worker. A sync smaller
  than the share never waits for a window boundary it has not learned.

Before the first answer only one request is in flight (the limit is unknown); a store that sends no
header is not paced at all. A 429 is handled by the client (`Retry-After` pauses every worker); here
it marks the window as spent, and its `Retry-After` tells when the window ends.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass

from syncd.clock import Clock
from syncd.http.response import Response
from syncd.http.retry import ascii_int, parse_retry_after

CALL_LIMIT_HEADER = "X-AC-Call-Limit"


def parse_call_limit(value: str | None) -> tuple[int, int] | None:
    """`"7/10"` -> (7, 10); None for an absent or malformed header (or a max below 1)."""
    if not value:
        return None
    used_text, sep, limit_text = value.strip().partition("/")
    used, limit = ascii_int(used_text), ascii_int(limit_text)
    if not sep or used is None or limit is None or limit < 1:
        return None
    return used, limit


@dataclass(frozen=True, slots=True)
class _Flight:
    """A request admitted and not yet answered: its admission order, and how many answers had
    been observed when it left (answers observed before it left were counted before it)."""

    ticket: int
    observed_before: int


class CallLimitThrottle:
    """Keeps a source's calls per window under the store's `X-AC-Call-Limit` (see module doc)."""

    def __init__(self, clock: Clock, *, window: float = 10.0, reserve: int = 0) -> None:
        if window <= 0 or reserve < 0:
            raise ValueError("CallLimitThrottle needs window > 0 and reserve >= 0")
        self._clock = clock
        self._window = window
        self._reserve = reserve
        self._limit: int | None = None
        self._answered = False
        self._anchor: float | None = None
        self._used = 0
        self._own = 0  # syncd's calls in the current window, those in flight included
        self._tickets = 0
        self._observed = 0
        self._flights: dict[asyncio.Task[object], _Flight] = {}
        # (observation index, used) of the answers observed since the window was anchored.
        self._history: deque[tuple[int, int]] = deque(maxlen=256)
        self._sleeper = asyncio.Lock()
        self._answer = asyncio.Event()

    @property
    def limit(self) -> int | None:
        """The store's `max` as last reported (None until a header was seen)."""
        return self._limit

    @property
    def used(self) -> int:
        """Calls believed counted in the current window, ours in flight included."""
        return self._used

    @property
    def own(self) -> int:
        """syncd's own calls in the current window, those in flight included."""
        return self._own

    @property
    def window_end(self) -> float | None:
        """Monotonic time at which the current window is believed to end."""
        return None if self._anchor is None else self._anchor + self._window

    async def acquire(self) -> None:
        """Return when one more call fits in the window (see module doc)."""
        while True:
            delay = self._admit_or_delay()
            if delay is None:
                return
            if math.isinf(delay):
                # Limit unknown and the probe still in flight: wait for any answer.
                answer = self._answer
                await answer.wait()
                continue
            async with self._sleeper:
                delay = self._admit_or_delay()
                if delay is None:
                    return
                if not math.isinf(delay):
                    await self._clock.sleep(delay)

    def observe(self, response: Response | None) -> None:
        """Learn from the answer to a request this throttle admitted (None: it got no answer)."""
        flight = self._flights.pop(_task(), None)
        try:
            if response is None:
                return
            self._answered = True
            header = parse_call_limit(response.headers.get(CALL_LIMIT_HEADER))
            if header is None:
                return
            used, limit = header
            self._limit = limit
            now = self._clock.monotonic()
            self._roll(now)
            index = self._observed
            self._observed += 1
            if response.status == 429:
                self._spent(now, response, limit)
                return
            after = self._sent_after(flight)
            reset = self._reset_between(flight, used)
            if self._anchor is None or reset:
                if reset:
                    # This answer and ours sent after it are the new window's.
                    self._own = 1 + after
                self._anchor = now
                self._history.clear()
                self._used = used + after
            else:
                # An answer from the previous window (a request in flight across the boundary)
                # cannot be told apart from one in this window: counting it here is the safe side.
                self._used = max(self._used, used + after)
            self._history.append((index, used))
        finally:
            self._wake()

    def release(self) -> None:
        """A call this throttle admitted was not sent: it no longer counts in the window."""
        if self._flights.pop(_task(), None) is not None:
            self._used = max(0, self._used - 1)
            self._own = max(0, self._own - 1)
        self._wake()

    # -- internals -------------------------------------------------------------------------

    def _admit_or_delay(self) -> float | None:
        """Admit the calling task now (None), or say how long to wait (inf: until an answer)."""
        self._purge()
        now = self._clock.monotonic()
        self._roll(now)
        if not self._answered and self._flights:
            return math.inf
        limit = self._limit
        if limit is not None and (
            self._own >= max(1, limit - self._reserve) or self._used >= limit
        ):
            if self._anchor is None:
                return math.inf
            return max(0.0, self._anchor + self._window - now)
        self._flights[_task()] = _Flight(self._tickets, self._observed)
        self._tickets += 1
        self._used += 1
        self._own += 1
        return None

    def _spent(self, now: float, response: Response, limit: int) -> None:
        """A 429: the window is spent, and `Retry-After` (if given) says when it resets."""
        self._used = max(self._used, limit)
        reset_in = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
        if reset_in is not None:
            self._anchor = now + reset_in - self._window
            self._history.clear()
        elif self._anchor is None:
            self._anchor = now

    def _roll(self, now: float) -> None:
        """Move to the window `now` falls in; calls still in flight may be counted in it."""
        if self._anchor is None or now < self._anchor + self._window:
            return
        passed = math.floor((now - self._anchor) / self._window)
        self._anchor += passed * self._window
        self._used = self._own = len(self._flights)

    def _reset_between(self, flight: _Flight | None, used: int) -> bool | None:
        """Whether the window reset between the answers observed before this request left and
        this answer (None: no such answer to compare with). Only a reset makes the store's count
        go down or stay put; other apps only push it up."""
        if flight is None:
            return None
        earlier = [u for index, u in self._history if index < flight.observed_before]
        if not earlier:
            return None
        return used <= max(earlier)

    def _sent_after(self, flight: _Flight | None) -> int:
        """Our unanswered requests that left after this one: probably not in its `used` yet."""
        if flight is None:
            return len(self._flights)
        return sum(1 for other in self._flights.values() if other.ticket > flight.ticket)

    def _purge(self) -> None:
        """Forget flights of tasks that ended without `observe` (cancelled mid-attempt)."""
        for task in [t for t in self._flights if t.done()]:
            del self._flights[task]

    def _wake(self) -> None:
        answer, self._answer = self._answer, asyncio.Event()
        answer.set()


def _task() -> asyncio.Task[object]:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("CallLimitThrottle is used from inside a running asyncio task only")
    return task

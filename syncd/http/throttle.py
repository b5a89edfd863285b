"""Throttles: what decides when a source's next request may leave, told what every answer said.

A `SourceClient` holds any number of them. Each attempt calls `acquire()` on every throttle (inside
the source's concurrency limit) before it is sent. Once admitted, exactly one of two calls follows:
`observe()` after the request was sent, with the answer or with None when there was none (timeout,
reset), or `release()` when it was not sent after all (a later throttle was cancelled, or a 429
paused the source while it waited). So a throttle that counts requests in flight never leaks one.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from aiolimiter import AsyncLimiter

from syncd.clock import Clock
from syncd.http.adaptive import AdaptiveRate, RateChange, RateTuning
from syncd.http.response import Response
from syncd.http.retry import RetryPolicy, parse_retry_after
from syncd.logging import get_logger

log = get_logger(__name__)

# The send rate that a first 429 on an unpaced source is cut from: requests of the last second.
_MEASURE_WINDOW = 1.0
# How late a paced request may leave and still keep the next slot on the schedule.
_SLACK = 0.01
# Slow start of a source without a configured rate: requests in flight allowed at first, and the
# count from which it is not limited any more (each accepted answer allows one more).
_SLOW_START = 1
_SLOW_START_END = 32


@dataclass(slots=True)
class _Tally:
    """Requests admitted and 429s answered since the last summary."""

    requests: int = 0
    refused: int = 0
    first: float = 0.0
    last: float = 0.0

    def sent(self, at: float) -> None:
        if not self.requests:
            self.first = at
        self.requests += 1
        self.last = at


class Throttle(Protocol):
    """Paces one source's requests."""

    async def acquire(self) -> None:
        """Return when one more request may be sent."""
        ...

    def observe(self, response: Response | None) -> None:
        """The answer to a request `acquire` let through (None: no answer arrived)."""
        ...

    def release(self) -> None:
        """The request `acquire` let through was not sent."""
        ...


class RateThrottle:
    """A fixed client-side rate: `rate` requests per second, at most `burst` back to back.

    Part of a burst larger than 1 is held in reserve. Paced at exactly the server's own rate and
    burst, a request that reaches the server sooner after the previous ones than it left them (they
    paid for a connection, or waited for a busy event loop) finds the server's bucket empty. A
    reserve of `r` requests absorbs `r / rate` seconds of such jitter: enough for JITTER seconds,
    at least one request, and never the whole burst.
    """

    JITTER = 0.05

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = burst or max(1, round(rate))
        reserve = min(self.burst - 1, max(1, math.ceil(rate * self.JITTER)))
        capacity = max(1, self.burst - reserve)
        self._limiter = AsyncLimiter(capacity, capacity / rate)

    async def acquire(self) -> None:
        """Wait for the leaky bucket to admit one request."""
        await self._limiter.acquire()

    def observe(self, response: Response | None) -> None:
        """A fixed rate ignores what the server says."""

    def release(self) -> None:
        """The slot stays spent (aiolimiter cannot give one back): the safe side."""


class AdaptiveThrottle:
    """Paces a source at its adaptive rate: engaged by a 429, recovering on the clock.

    aiolimiter cannot change its rate or read an injected clock (aiolimiter#98), so this pacer is
    a plain schedule of send slots `1/rate` apart on the `Clock`, taken by one waiter at a time.
    A 429 cuts the rate once per flight of requests (the answers to requests already sent at the
    old rate cut nothing more), and holds every slot until its `Retry-After` is over, so that
    workers waiting here leave one by one at the new rate instead of all at once when the
    source's shared pause ends. Without a ceiling, the source starts slowly (one request in
    flight, one more per accepted answer) until its first 429 or until it is past
    `max_concurrency`'s range, and `summarize()` logs one `http.rate_summary` per run.
    """

    def __init__(
        self,
        source: str,
        clock: Clock,
        tuning: RateTuning,
        policy: RetryPolicy,
        ceiling: float | None = None,
    ) -> None:
        self.source = source
        self.rate = AdaptiveRate(tuning, ceiling)
        self._clock = clock
        self._policy = policy
        self._next_slot = 0.0
        self._hold_until = 0.0
        self._queue = asyncio.Lock()
        # Before its first 429 an unconfigured source starts with one request in flight and
        # one more per accepted answer (TCP's slow start): the store's burst is unknown, and
        # `max_concurrency` requests sent at once against a small one are mostly refused.
        self._slow: int | None = _SLOW_START if ceiling is None else None
        self._answered = asyncio.Event()
        self._in_flight = 0
        self._absorb = 0
        self._sent: deque[float] = deque()
        self._tally = _Tally()
        self._accepted = 0
        # Set by a pause: the next request to leave starts a new trial of the rate.
        self._resuming = ceiling is None

    async def acquire(self) -> None:
        """Wait for this request's slot; free passage while the adaptive rate is not engaged.

        Waiters queue and only the first sleeps, until the slot the *current* rate gives it: a
        rate raised meanwhile applies to the next request at once, not after slots that were
        planned at the old rate (those made a raised rate look proven before it was ever sent).
        """
        while self._slow is not None and self._in_flight >= self._slow:
            answered = self._answered
            await answered.wait()
        async with self._queue:
            while True:
                now = self._clock.monotonic()
                # Answers still to come for requests already sent count as before any change.
                self._apply(self.rate.recover(now, self._accepted + self._in_flight), None)
                slot = max(now, self._hold_until)
                if self.rate.rate is not None:
                    slot = max(slot, self._next_slot)
                if slot <= now:
                    if self._resuming:
                        self._resuming = False
                        self._apply(self.rate.sending(now, self._accepted), None)
                    break
                await self._clock.sleep(slot - now)
            if self.rate.rate is not None:
                # Late by less than the slack (a busy loop): stay on the grid, do not drift.
                self._next_slot = max(self._next_slot, now - _SLACK) + 1.0 / self.rate.rate
        self._in_flight += 1
        sent = self._clock.monotonic()
        self._sent.append(sent)
        while self._sent and self._sent[0] < sent - _MEASURE_WINDOW:
            self._sent.popleft()
        self._tally.sent(sent)

    def release(self) -> None:
        """An admitted request was not sent: no answer will come, and it sent nothing."""
        self.observe(None)
        if self._sent:
            self._sent.pop()
        self._tally.requests = max(0, self._tally.requests - 1)

    def observe(self, response: Response | None) -> None:
        """Cut the rate on a 429 sent under the current plan; hold slots for its `Retry-After`."""
        self._in_flight = max(0, self._in_flight - 1)
        answered, self._answered = self._answered, asyncio.Event()
        answered.set()
        if self._slow is not None and response is not None:
            self._slow = self._slow + 1 if response.status != 429 else _SLOW_START_END
            if self._slow >= _SLOW_START_END:
                self._slow = None
        stale = self._absorb > 0
        if stale:
            self._absorb -= 1
        if response is None:
            return
        if response.status != 429:
            self._accepted += 1
            return
        self._tally.refused += 1
        now = self._clock.monotonic()
        header = response.headers.get("Retry-After")
        pause = self._policy.rate_limit_pause(parse_retry_after(header, self._clock.now()))
        self._hold_until = max(self._hold_until, now + pause)
        if stale:
            self.rate.refused(self._hold_until)
            return
        measured = self._measured(now)
        self._resuming = self.rate.ceiling is None
        self._next_slot = self._hold_until
        self._absorb = self._in_flight
        self._apply(self.rate.cut(now, measured, self._hold_until, self._accepted), pause)

    def summarize(self) -> None:
        """Log what this source's pacing did since the last summary (one per run), and restart."""
        tally, self._tally = self._tally, _Tally()
        if not tally.requests:
            return
        span = tally.last - tally.first
        found = self.rate.ceiling if self.rate.ceiling is not None else self.rate.found
        log.info(
            "http.rate_summary",
            source=self.source,
            configured_rate=self.rate.ceiling,
            found_rate=None if found is None else round(found, 3),
            paced_rate=None if self.rate.rate is None else round(self.rate.rate, 3),
            requests=tally.requests,
            rate_limited=tally.refused,
            mean_rate=round(tally.requests / span, 3) if span > 0 else None,
        )

    def _measured(self, now: float) -> float:
        """The rate the source was sending at: its sends of the last second, over the time they
        actually span (a source that began 20 ms ago sent at 50x what a one-second count says)."""
        while self._sent and self._sent[0] < now - _MEASURE_WINDOW:
            self._sent.popleft()
        if not self._sent:
            return 0.0
        return len(self._sent) / max(now - self._sent[0], _MEASURE_WINDOW / 20)

    def _apply(self, change: RateChange | None, retry_after: float | None) -> None:
        if change is None or change.old == change.new:
            return  # already at the floor: the 429 itself is logged by the client
        # Debug: a settled source changes rarely, but the search and the recovery steps are
        # many lines an operator does not need; `http.rate_summary` says what came of them.
        log.debug(
            "http.rate_adjusted",
            source=self.source,
            old_rate=None if change.old is None else round(change.old, 3),
            new_rate=None if change.new is None else round(change.new, 3),
            reason=change.reason,
            retry_after=retry_after,
        )

"""Pacing by a store's own count: AmeriCommerce's `X-AC-Call-Limit: used/max` per fixed window.

The store counts every call it receives in a window of `window` seconds (10 on AmeriCommerce) and
answers 429 past `max`. Its count is shared with every other app installed on the store, and the
window's phase is not announced. `CallLimitThrottle` keeps an estimate of the current window:

- **Anchor.** A response whose `used` is not above that of a response received *before this
  request was sent* proves that a new window began in between. The anchor is the latest moment
  the current window can have begun: the first answer's arrival, then moved a window at a time
  on the clock, and earlier only by a proven boundary (below). Estimating late is the safe side:
  a window believed to end later than it does only makes syncd wait a little longer.
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
- **Phase.** Windows follow each other every `window` seconds, so every boundary seen narrows
  where they fall: the current window began within `width` seconds before the anchor. Until a
  probe has landed in a new window, and then while the interval is wider than two shares' worth
  of time (`2 * window / share`), the last call of each window's share is held back as a probe
  and sent part-way into the interval where the next boundary may fall: counted in the old
  window, it moves the interval's start; in a new one, its end and the anchor (and the rest of
  the new share leaves at once). The probe is one of the calls the share allows, so learning
  draws no 429 and takes no call of the other apps; one that lands in the new window costs a
  call of the old one, so the smaller the share, the earlier in the interval it leaves. Only the
  anchor moving earlier makes bursts leave as a window opens, not as late as the first answer's
  moment in it. There is no probe without a reserve (nothing guarantees the call later in the
  window) nor after one drew a 429, and none in the first window unless more calls are already
  waiting than its share, so a sync of one share never waits.
- **First window.** Calls the store counted before our first are taken for the other apps' up
  to the reserve. Past it they may be an earlier process's (a restart, another owner, started in
  a window its predecessor spent), and nothing tells them apart: they count as our own, up to
  the share, so the other apps still get their reserve.

Before the first answer only one request is in flight (the limit is unknown); a store that sends no
header is not paced at all. A 429 is handled by the client (`Retry-After` pauses every worker); here
it marks the window as spent, and its `Retry-After` tells when the window ends.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from syncd.clock import Clock
from syncd.http.response import Response
from syncd.http.retry import ascii_int, parse_retry_after
from syncd.store import CallWindowState

CALL_LIMIT_HEADER = "X-AC-Call-Limit"
# Clock readings this close to a window's end are at its end.
_EPSILON = 1e-9
# How far apart the wall clocks of two hosts sharing a store may be (NTP keeps them within
# milliseconds): a window's end read from another process's state is taken this much later.
_CLOCK_SKEW = 0.1
# Probing stops once the phase is known within this many shares' worth of time (`window /
# share`): each probe past a boundary costs a call, and narrowing the interval further gained
# less than it cost. Two read 0.2-0.75 points more calls than one on every plan, 5 to 50 calls,
# over two sets of 320 seeded runs in virtual time (tests/test_call_limit.py `boxed_run`).
_PHASE_SHARES = 2


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
    sent: float
    probe: bool = False


@dataclass(frozen=True, slots=True)
class _Seen:
    """An answer observed since the anchor: its observation index, the store's count in it, and
    when its request left and its answer arrived (the store counted it in between)."""

    index: int
    used: int
    sent: float
    answered: float


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
        # The current window began in (anchor - width, anchor]: `window` means nothing is known.
        self._width = window
        self._rtt = 0.0
        # The most calls of other apps seen in a window: the reserve, unless they took more.
        self._others = reserve
        self._probe_refused = False
        self._rolled = False  # a window has ended since the first answer
        # A boundary was found before the clock's estimate of it: bursts no longer leave a whole
        # first-answer offset after their window opened.
        self._placed = False
        self._waiting = 0  # tasks inside `acquire`: more calls want to leave than are admitted
        self._used = 0
        self._own = 0  # syncd's calls in the current window, those in flight included
        self._tickets = 0
        self._observed = 0
        self._flights: dict[asyncio.Task[object], _Flight] = {}
        # The answers observed since the window was anchored.
        self._history: deque[_Seen] = deque(maxlen=256)
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

    @property
    def phase_width(self) -> float:
        """Seconds within which the current window's start is known (`window`: unknown)."""
        return self._width

    def state(self) -> CallWindowState | None:
        """The current window as another process can resume it (None: nothing learned yet)."""
        now = self._clock.monotonic()
        self._roll(now)
        if self._anchor is None or self._limit is None:
            return None
        ends_in = self._anchor + self._window - now
        return CallWindowState(
            self._clock.now() + timedelta(seconds=ends_in), self._limit, self._own, self._width
        )

    def resume(self, state: CallWindowState) -> None:
        """Take on the window a previous process (or owner) left: its calls in it count as
        ours, and its phase holds, so the share is not spent twice. Only a window that has not
        ended yet is taken: an ended one says nothing sure of windows after an idle time."""
        now, wall = self._clock.monotonic(), self._clock.now()
        ends_at = now + (state.ends_at - wall).total_seconds() + _CLOCK_SKEW
        if ends_at <= now or state.limit < 1 or (self.window_end or 0.0) >= ends_at:
            return
        self._limit = state.limit
        self._answered = True
        self._anchor = ends_at - self._window
        self._width = min(self._window, state.phase_width + 2 * _CLOCK_SKEW)
        self._own = max(self._own, state.calls + len(self._flights))
        self._used = max(self._used, self._own)
        self._history.clear()

    async def acquire(self) -> None:
        """Return when one more call fits in the window (see module doc)."""
        self._waiting += 1
        try:
            await self._acquire()
        finally:
            self._waiting -= 1

    async def _acquire(self) -> None:
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
            seen = _Seen(self._observed, used, now if flight is None else flight.sent, now)
            self._observed += 1
            if flight is not None:
                self._rtt = max(0.9 * self._rtt, now - flight.sent)
            if response.status == 429:
                self._probe_refused = self._probe_refused or (flight is not None and flight.probe)
                self._spent(now, response, limit)
                return
            self._count(flight, seen)
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
        probe = False
        if limit is not None:
            share = max(1, limit - self._reserve)
            if self._own >= share or self._used >= limit:
                if self._anchor is None:
                    return math.inf
                return max(0.0, self._anchor + self._window - now)
            probe_at = self._probe_at(share)
            if probe_at is not None and self._own == share - 1:
                if now < probe_at:
                    return probe_at - now
                probe = True
        self._flights[_task()] = _Flight(self._tickets, self._observed, now, probe)
        self._tickets += 1
        self._used += 1
        self._own += 1
        return None

    def _probe_at(self, share: int) -> float | None:
        """When the window's last call leaves while the phase is being learned (None: it is
        known well enough, or a share of one call has nothing to hold back). Only the share
        the reserve guarantees is held back: without a reserve, or once a probe found the window
        full (other apps took more than it), later in the window is where others' calls are."""
        anchor = self._anchor
        if anchor is None or share < 2 or not self._reserve:
            return None
        if not self._rolled and self._waiting < 2:
            return None  # the first window's share may be the whole sync: it never waits
        if self._probe_refused:
            return None
        # Until a probe lands past a boundary, bursts leave the first answer's offset after
        # their window opened however narrow the interval has become (it only grew from below),
        # and a run that ends within that offset of a window's opening loses its share.
        enough = max(_PHASE_SHARES * self._window / share, 3 * self._rtt)
        if self._placed and self._width <= enough:
            return None
        # Where in the interval in which the next boundary falls: a probe past the boundary
        # costs a call of the window it was held back in, one before it costs nothing. The
        # smaller the share, the dearer a call against it: until one has landed past a
        # boundary, a probe leaves about a third into the interval on a share of 3, half-way
        # on larger ones; after that, earlier (narrowing the interval before the boundary is
        # free). Fitted in virtual time over shares of 3 to 35 (tests/test_call_limit.py).
        if self._placed:
            fraction = min(0.5, 0.1 * math.cbrt(share))
        else:
            fraction = min(0.55, 0.25 * math.sqrt(share))
        return anchor + self._window - self._width * (1 - fraction)

    def _count(self, flight: _Flight | None, seen: _Seen) -> None:
        """Fold an accepted answer into the window's count, and what it says of the phase."""
        after = self._sent_after(flight)
        earlier = self._earlier(flight)
        newer = earlier is not None and seen.used <= earlier.used
        if self._anchor is None:
            # Only a probe was sent: its window began at most when it was answered.
            self._anchor, self._width = seen.answered, self._window
            self._history.clear()
            self._used = seen.used + after
            self._own = max(self._own, self._inherited(seen.used - 1 - after))
        elif newer and earlier is not None:
            # Only a new window makes the store's count go down or stay put.
            self._boundary(earlier.sent, seen.answered)
            self._used = max(self._used, seen.used + after)
        else:
            if flight is not None and flight.probe and earlier is not None:
                self._probe_stayed(flight, seen, earlier, after)
            # An answer from the previous window (a request in flight across the boundary)
            # cannot be told apart from one in this window: counting it here is the safe side.
            self._used = max(self._used, seen.used + after)
        if flight is not None and self._anchor is not None and flight.sent >= self._anchor:
            # Left in this window, so counted in it (or a later one): the others' lower bound.
            self._others = max(self._others, seen.used - self._own)
        self._history.append(seen)

    def _boundary(self, after: float, before: float) -> None:
        """A window began in (after, before]: narrow the phase to it. The latest copy of the
        phase interval that meets it wins (believing a window began later is the safe side)."""
        anchor, width, window = self._anchor, self._width, self._window
        assert anchor is not None
        met = []
        for k in range(math.floor((after - anchor) / window) - 1, 3):
            high = min(anchor + k * window, before)
            low = max(anchor + k * window - width, after)
            if low < high:
                met.append((k, low, high))
        # Ours still in flight may be counted in the new window too, whatever order they left
        # in (answers overtake each other).
        counted = 1 + len(self._flights)
        if not met:
            # Not where the phase said (the store moved its windows): learn it again, and count
            # what this window has already seen of ours too (the safe side).
            self._anchor, self._width, self._placed = before, window, False
            self._own = max(self._own, counted)
            self._used = 0
            self._history.clear()
            return
        k, low, high = met[-1]
        self._width = min(window, high - low)
        if k <= 0:
            return  # the window the count already moved to on the clock
        # A window the count had not moved to yet: this answer and ours in flight are its. If
        # the boundary may also be the one the count moved to, what it counted stays.
        self._anchor, self._placed = high, True
        self._own = counted if len(met) == 1 else max(self._own, counted)
        self._used = 0
        self._history.clear()

    def _inherited(self, before: int) -> int:
        """Our own calls in the first window, given `before` calls the store counted there ahead
        of ours. Up to the reserve they are taken as the other apps' (a sync within the share
        then waits for no window). Past it, they may be an earlier syncd process's that spent
        this window's share (a restart, another owner): nothing tells them apart, so they count
        as ours, up to the share, and the other apps still get their reserve."""
        limit = self._limit
        if limit is None or before <= self._reserve:
            return 1
        return min(max(1, limit - self._reserve), 1 + before)

    def _probe_stayed(self, flight: _Flight, seen: _Seen, earlier: _Seen, after: int) -> None:
        """The probe was counted after `earlier` in one window, unless a new window could
        already hold as many calls (the other apps' most in a window, plus ours since the
        probe)."""
        anchor = self._anchor
        assert anchor is not None
        if not anchor <= flight.sent < anchor + self._window:
            return  # the window it left in is over: the count moved on with the clock
        if seen.used > 1 + self._others + after:
            # No boundary between `earlier`'s answer and the probe's departure.
            self._width = min(self._width, anchor + self._window - flight.sent)
        else:
            # Perhaps in a new window: that one began by this answer at the latest, and our
            # whole share counts in it until it ends (the phase is learned again).
            self._anchor, self._width = seen.answered, self._window
            self._placed = False
            self._history.clear()

    def _spent(self, now: float, response: Response, limit: int) -> None:
        """A 429: the window is spent, and `Retry-After` (if given) says when it resets."""
        self._used = max(self._used, limit)
        reset_in = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
        if reset_in is not None:
            self._anchor = now + reset_in - self._window
            self._width = self._window
            self._placed = False
            self._history.clear()
        elif self._anchor is None:
            self._anchor = now

    def _roll(self, now: float) -> None:
        """Move to the window `now` falls in; calls still in flight may be counted in it."""
        # A hair of tolerance: a sleep that ends at the boundary may read a clock a rounding
        # error short of it (a virtual clock then never moves again).
        if self._anchor is None or now < self._anchor + self._window - _EPSILON:
            return
        passed = max(1, math.floor((now - self._anchor + _EPSILON) / self._window))
        self._rolled = True
        self._anchor += passed * self._window
        self._used = self._own = len(self._flights)
        # The count restarts: answers of the window that ended say nothing of this one's.
        self._history.clear()

    def _earlier(self, flight: _Flight | None) -> _Seen | None:
        """Of the answers observed before this request left, the one with the highest count
        (None: there is none to compare with). Other apps only push the count up."""
        if flight is None:
            return None
        earlier = [seen for seen in self._history if seen.index < flight.observed_before]
        return max(earlier, key=lambda seen: seen.used, default=None)

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

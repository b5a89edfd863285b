"""The adaptive rate of one source: cut on a 429, won back on the clock; pure maths on clock readings.

A source with a configured `rate_limit` (its *ceiling*) is paced by that fixed bucket until the API
answers 429 anyway. A 429 then engages the adaptive rate at `decrease` times the rate in use, and
every `recovery_interval` seconds without another cut the rate climbs back by `recovery_step` of
the ceiling, where it is held smoothly.

A source without one is not paced until its first 429; from then on it searches for the store's
limit and settles below it, instead of swinging around it (released at full speed, it drew a 429
each time it came back). Every 429 costs its `Retry-After` (a whole second at least) for every
worker, so the search spends as few as it can:

- **Bounds.** `upper` is the rate that drew the last 429 (the store's limit is below it; only
  roughly when measured while unpaced); `lower` is the highest rate shown to be within the limit.
- **Search.** While nothing is proven the rate is cut by `decrease` squared on each 429. A rate
  held without a 429 for the proof time becomes the lower bound; the next rate tried lies a
  quarter of the way from it to the upper bound in log terms (not the middle: a trial that draws
  a 429 costs its pause; one that holds, a proof time a little below the limit), but no further
  above what held than `precision` squared, then to the power 4, 8... Above a
  rough bound only those steps apply. The search ends when the bounds are within `precision` of
  each other: the source is then held at `lower`, below the limit it found.
- **What got through.** A 429 ends a trial begun with the store's bucket full (after the last
  pause); once its answers are in (as sending resumes), what the store let through is read as a
  token bucket would have it: the bucket plus its rate times the time. What got through before
  the first 429, and each trial at one rate, bound the burst (`burst`); that bound turns what got
  through into a limit proven at once (often closer than the precision) and, in the descent,
  caps the next rate; the proof time is long enough that the burst could hide no more than a few
  percent of overshoot near `upper`; and two long trials at one rate whose difference shows a
  limit below what was proven step the source down to it.
- **Probing.** Held for `probe_interval` without a 429, the upper bound is raised by `probe_step`
  and the middle tried. A probe that draws a 429 doubles the wait before the next one, so a steady
  store sees fewer and fewer of them; one that holds shows the store's limit rose, and the search
  climbs on, further each time, until a 429 says where it is.

`floor` bounds every cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from syncd.config import HttpSettings
from syncd.store import RateSearch

# Below this many seconds of sending since the descent began, nothing was measured.
_ACHIEVED_SPAN = 0.05
# A limit proven by what the store let through stays this far below the rate that drew a 429.
_BELOW = 0.99
# A rate counts as proven once held long enough that a store's burst could hide no more than
# this share above its limit (a rate proven above the limit draws a 429 later, and its pause).
_PROOF_MARGIN = 0.03
# The same far from the rate that drew a 429 (a trial there is a small share of the limit).
_FAR_MARGIN = 0.08
# Answers each of two trials must have let through for their difference to tell the rate.
_CROSSED_ANSWERS = 20
# Trials ended by a 429 kept to bound the store's burst.
_RUNS = 8
# Where between the bounds (in log terms) the next trial lies: a quarter of the way up from what
# held, not the middle. A trial above the limit costs a 429 and its whole `Retry-After` (a second
# at least, of every worker); one that holds costs only its proof time a little below the limit.
_SPLIT = 0.25

ChangeReason = Literal["rate_limited", "recovering", "recovered", "proven", "probing"]


@dataclass(frozen=True, slots=True)
class RateTuning:
    """How hard a 429 cuts a source's rate and how quickly the rate comes back."""

    decrease: float = 0.75
    recovery_step: float = 0.05
    recovery_interval: float = 2.0
    floor: float = 0.1
    # The search for an unconfigured store's limit (see the module doc).
    precision: float = 1.12
    proof_requests: int = 4
    probe_interval: float = 120.0
    probe_step: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise ValueError("RateTuning.decrease must be within (0, 1)")
        if self.recovery_step <= 0 or self.recovery_interval <= 0 or self.floor <= 0:
            raise ValueError("RateTuning steps, interval and floor must be positive")
        if self.precision <= 1 or self.proof_requests < 1:
            raise ValueError("RateTuning.precision must exceed 1 and proof_requests be >= 1")
        if self.probe_interval <= 0 or self.probe_step <= 0:
            raise ValueError("RateTuning.probe_interval and probe_step must be positive")

    @classmethod
    def from_settings(cls, http: HttpSettings) -> RateTuning:
        """The tuning the `[http]` settings describe."""
        return cls(
            decrease=http.rate_decrease,
            recovery_step=http.rate_recovery_step,
            recovery_interval=http.rate_recovery_interval,
            floor=http.rate_floor,
        )

    def proof_time(self, rate: float, burst: float = 0.0, margin: float = 0.0) -> float:
        """Seconds a rate must be held without a 429 to count as within the store's limit: long
        enough that a `burst` of requests the store holds could hide no more than `margin` of
        overshoot (the precision when not given)."""
        margin = margin or _FAR_MARGIN
        return max(self.recovery_interval, self.proof_requests / rate, burst / (rate * margin))


@dataclass(frozen=True, slots=True)
class RateChange:
    """One change of a source's adaptive rate (None: not paced by the adaptive rate)."""

    old: float | None
    new: float | None
    reason: ChangeReason


class AdaptiveRate:
    """The current adaptive rate of one source, as a function of the cuts and the time since."""

    def __init__(self, tuning: RateTuning, ceiling: float | None = None) -> None:
        self.tuning = tuning
        self.ceiling = ceiling
        self.rate: float | None = None
        self._reference: float | None = ceiling
        self._changed_at = 0.0
        # The search of an unconfigured source (module doc).
        self.upper: float | None = None
        self.lower: float | None = None
        self._probe_wait = tuning.probe_interval
        self._probing = False
        # Since the descent began: the answers accepted and the seconds spent sending.
        self._descent: tuple[int, float] | None = None
        # Since the last pause (the store's bucket full again), and since the current rate was
        # set: when, and the answers accepted by then. A 429 ends both: read as sending resumes.
        self._trial: tuple[float, int] = (0.0, 0)
        self._segment: tuple[float, int] = (0.0, 0)
        self._ended: tuple[tuple[float, int], tuple[float, int] | None, float] | None = None
        # What got through in each trial at one rate that a 429 ended, and the seconds it took
        # (the latest few): each bounds the store's burst.
        self._runs: list[tuple[int, float]] = []
        self._start_burst = math.inf
        self._stride = 2
        self._soft = False

    @property
    def burst(self) -> float | None:
        """The most the store's bucket can hold, as far as shown (None: no 429 yet). A trial
        at one rate that began with the bucket full and ended with it empty let through the
        bucket plus what the store's rate (at least `lower`) refilled meanwhile, plus at most
        one."""
        lower = self.lower or 0.0
        bound = min((n + 1.0 - lower * span for n, span in self._runs), default=math.inf)
        bound = min(bound, self._start_burst)
        return None if math.isinf(bound) else max(1.0, bound)

    @property
    def search(self) -> RateSearch | None:
        """Where the search for the store's limit stands, to resume it elsewhere (None: told the
        limit, not searched yet, or climbing after a probe held, where `upper` bounds nothing)."""
        if self.ceiling is not None or self._soft or self.lower is None or self.upper is None:
            return None
        return RateSearch(self.lower, self.upper, self.burst)

    def held_for(self, now: float) -> float:
        """Seconds the source has been held at the limit it settled on without a 429 by `now`
        (its probe is due after `probe_interval` of them); 0 while the search goes on."""
        if not self._settled():
            return 0.0
        return max(0.0, now - self._changed_at)

    def _settled(self) -> bool:
        rate, lower, upper = self.rate, self.lower, self.upper
        return (
            not self._soft
            and rate is not None
            and lower is not None
            and upper is not None
            and rate <= lower
            and upper <= lower * self.tuning.precision
        )

    @property
    def engaged(self) -> bool:
        """True while the adaptive rate paces the source."""
        return self.rate is not None

    @property
    def found(self) -> float | None:
        """The highest rate this source has shown the store to accept (None: not searched)."""
        return self.lower

    def cut(
        self, now: float, measured: float, resume_at: float | None = None, accepted: int = 0
    ) -> RateChange:
        """A 429 answered a request sent at the current rate: slow down.

        `measured` is the rate the source was sending at, used when neither an adaptive rate nor a
        ceiling says what the source was allowed. Recovery counts from `resume_at` (the end of the
        429's pause): time spent not sending proves nothing about the new rate. `accepted` counts
        the source's answers other than 429 so far: while no rate is proven, the rate the store
        actually let through since the descent began bounds the next cut (a source that sent at
        30 times the limit would otherwise need a dozen cuts, each a 429 and a pause, to get down).
        """
        old = self.rate
        self._changed_at = max(now, resume_at or now)
        if self.ceiling is not None:
            base = old if old is not None else self.ceiling
            self.rate = max(self.tuning.floor, base * self.tuning.decrease)
            return RateChange(old, round(self.rate, 6), "rate_limited")
        drawn = max(self.tuning.floor, old if old is not None else measured)
        # Unpaced, the start may have sent below the limit a while (the bucket full, its
        # refill lost): such a trial bounds no burst.
        self._ended = (self._trial, self._segment if old is not None else None, now)
        self._stride = max(2, self._stride // 2)
        if self._probing:
            self._probe_wait *= 2  # the store did not move: look again later, and less often
            self._probing = False
        if self.lower is not None and self.lower >= drawn:
            # What was proven no longer holds: it was proven too soon (a large burst hid the
            # overshoot), or the store lowered its limit. The limit is most likely just below:
            # step down by twice the precision, and search again from there (`sending` may
            # find from what got through that it is closer).
            self.upper, self._soft = drawn, False
            self.lower = max(self.tuning.floor, drawn / self.tuning.precision**2)
            self.rate = self.lower
            return RateChange(old, round(self.rate, 6), "rate_limited")
        # A rate measured while unpaced is only a rough bound: the search may pass it.
        self.upper, self._soft = drawn, old is None
        if self.lower is None:
            # Cut twice as hard: nothing is proven, and an unpaced source's rate is far above
            # the limit (each cut costs a 429 and its pause).
            self.rate = max(self.tuning.floor, drawn * self.tuning.decrease**2)
        else:
            self.rate = self._next_trial(self.lower, drawn)
        return RateChange(old, round(self.rate, 6), "rate_limited")

    def sending(self, now: float, accepted: int) -> RateChange | None:
        """The source sends again after a pause (or for the first time): the store's bucket has
        refilled, and `accepted` answers other than 429 had come back by `now`.

        Every answer to the trial the last 429 ended is in by now (a 429 comes back before the
        pages sent just ahead of it), so this is where what the store let through is read: in
        the descent, the rate it let through since the descent began bounds the next rate (a
        source that sent at 30 times the limit would otherwise need a dozen cuts, each a 429
        and a pause, to get down); and what got through in the trial proves a limit of at least
        that rate less the store's burst, which the trial bounds too.
        """
        ended, self._ended = self._ended, None
        self._trial = self._segment = (now, accepted)
        if ended is None or self.ceiling is not None or self.rate is None or self.upper is None:
            return None
        old = self.rate
        (since, before), segment, until = ended
        began, counted = segment or (math.inf, 0)
        through, sending = accepted - before, until - since
        if segment is None:
            # The bucket, full as the source began, ran dry: it held at most what got through,
            # plus one (less what the store refilled meanwhile, but when is unknown).
            self._start_burst = min(self._start_burst, through + 1.0)
        if began == since:
            # One rate from a full bucket to an empty one (a trial that raised its rate may have
            # sent below the limit a while, the bucket full and its refill lost: no bound).
            self._runs = [*self._runs[-(_RUNS - 1) :], (through, sending)]
        if self.lower is None:
            self.rate = max(self.tuning.floor, min(self.rate, self._let_through(through, sending)))
        crossed = self._crossed()
        if crossed is not None and self.lower is not None and crossed < self.lower:
            # Two trials disagree with what was proven: it was proven too soon.
            self.lower = self.rate = max(self.tuning.floor, crossed * _BELOW)
        held = max(self._held(through, sending), self._held(accepted - counted, until - began))
        # In the descent, a bound below the next rate to try says nothing new.
        if held > (self.rate if self.lower is None else self.lower):
            self.lower, self._descent = held, None
            self.rate = max(held, self._next_trial(held, self.upper))
        if self.rate == old:
            return None
        return RateChange(old, round(self.rate, 6), "proven" if self.rate > old else "rate_limited")

    def _let_through(self, through: int, sending: float) -> float:
        """In the descent, the most the store's rate can be: what it let through since the
        descent began (the trials after the first pause: the unpaced start's answers were not
        all in when it was measured); and what the last trial let through beyond the bucket,
        which held at least what any trial let through beyond what the lowest rate that drew a
        429 could have refilled (a store whose every trial ends after about its burst is far
        below the rates tried: without this, each cut would cost a 429 and its pause)."""
        bound = math.inf
        if self._descent is None:
            self._descent = (0, 0.0)
        else:
            total, span = self._descent
            total, span = total + through, span + sending
            self._descent = (total, span)
            if span >= _ACHIEVED_SPAN:
                bound = total / span
        if self.upper is not None and sending >= _ACHIEVED_SPAN and self._runs:
            least = max(n - self.upper * s for n, s in self._runs)
            bound = min(bound, (through + 1.0 - least) / sending)
        return bound

    def _crossed(self) -> float | None:
        """The store's rate from the last two trials at one rate, when they were long: each let
        through the same bucket plus the rate times its length (None: too short to tell)."""
        if len(self._runs) < 2:
            return None
        (n1, s1), (n2, s2) = self._runs[-2:]
        if min(n1, n2) < _CROSSED_ANSWERS or abs(s1 - s2) < self.tuning.recovery_interval:
            return None
        rate = (n1 - n2) / (s1 - s2)
        return rate if rate > 0 else None

    def _held(self, through: int, span: float) -> float:
        """The limit shown by `through` answers in `span` seconds that ended with a 429: at most
        `burst` of them came from the bucket, the rest at the store's rate (0: nothing shown)."""
        if span < _ACHIEVED_SPAN or self.upper is None:
            return 0.0
        held = min((through - (self.burst or 0.0)) / span, self.upper * _BELOW)
        return held if held >= self.tuning.floor else 0.0

    def refused(self, resume_at: float) -> None:
        """A 429 that cut nothing (an answer to a request sent before the last cut) still holds
        the source until `resume_at`: time that proves nothing about the current rate."""
        if self.ceiling is None:
            self._changed_at = max(self._changed_at, resume_at)

    def recover(self, now: float, accepted: int = 0) -> RateChange | None:
        """Apply what the time since the last change brings by `now`, if anything (`accepted`:
        the source's answers other than 429 so far, where a rate raised now starts counting)."""
        if self.ceiling is None:
            change = self._search(now)
            if change is not None:
                self._segment = (now, accepted)
            return change
        rate, reference = self.rate, self._reference
        if rate is None or reference is None:
            return None
        if rate >= reference:
            return None
        steps = math.floor((now - self._changed_at) / self.tuning.recovery_interval)
        if steps < 1:
            return None
        self._changed_at += steps * self.tuning.recovery_interval
        new = min(reference, rate + steps * self.tuning.recovery_step * reference)
        if new < reference:
            self.rate = new
            return RateChange(rate, round(new, 6), "recovering")
        self.rate = reference
        return RateChange(rate, round(reference, 6), "recovered")

    def _search(self, now: float) -> RateChange | None:
        """An unconfigured source: prove the rate held, try the next one, or probe upward."""
        rate, upper = self.rate, self.upper
        if rate is None or upper is None:
            return None
        lower = self.lower
        if self._settled():
            if now - self._changed_at < self._probe_wait:
                return None
            self._changed_at = now
            # A climb after the probe starts from the smallest step again (the stride grew
            # with every proof of the search: a held probe would otherwise leap far above).
            self._probing, self._stride = True, 2
            self.upper = max(upper, rate * self.tuning.precision) * (1 + self.tuning.probe_step)
            self.rate = self._next_trial(rate, self.upper)
            return RateChange(rate, round(self.rate, 6), "probing")
        # Near the rate that drew a 429, a rate proven above the limit would be tried again and
        # again, each time a 429: prove it longer there than far below.
        near = rate * self.tuning.precision**2 >= upper
        margin = _PROOF_MARGIN if near else 0.0
        if now - self._changed_at < self.tuning.proof_time(rate, self.burst or 0.0, margin):
            return None
        # Held without a 429: the store accepts this rate.
        self._changed_at = now
        if self._probing:
            # The store's limit rose past the bound: climb, further each time, until a 429.
            self._probing, self._soft = False, True
            self._probe_wait = self.tuning.probe_interval
        self.lower = max(rate, lower or 0.0)
        self._descent = None
        if not self._soft and upper <= self.lower * self.tuning.precision:
            if rate >= self.lower:
                return None
            self.rate = self.lower
        else:
            self.rate = self._next_trial(self.lower, upper)
            self._stride *= 2
        return RateChange(rate, round(self.rate, 6), "proven")

    def _next_trial(self, lower: float, upper: float) -> float:
        """The rate to try between what held and what drew a 429 (the lower one when close):
        `_SPLIT` of the way up in log terms, but no further above what held than `precision` to
        the power of the proofs in a row."""
        stride = lower * self.tuning.precision**self._stride
        if self._soft:
            return max(self.tuning.floor, stride)
        if upper <= lower * self.tuning.precision:
            return lower
        trial: float = lower * (upper / lower) ** _SPLIT
        return max(self.tuning.floor, min(trial, stride))

    def resume(
        self,
        rate: float | None,
        now: float,
        resume_at: float | None = None,
        search: RateSearch | None = None,
    ) -> None:
        """Continue from a rate an earlier owner of the source persisted (None: not engaged);
        recovery counts from `resume_at` (the end of a pause still pending), else `now`. Without
        a ceiling, `search` (see `search`) resumes the earlier search where it stood, so a settled
        source is held at the limit it found with no 429 to find it again; without it, the rate
        before one cut (`rate / decrease`) stands in for the bound that drew a 429."""
        if rate is None:
            self.rate, self._reference = None, self.ceiling
            return
        if self.ceiling is not None:
            rate = min(rate, self.ceiling)
        self.rate = max(self.tuning.floor, rate)
        if self._reference is None:
            self._reference = max(self.rate / self.tuning.decrease, self.tuning.floor)
        resumed = max(now, resume_at or now)
        self._changed_at = resumed
        if self.ceiling is None and search is not None and 0 < search.lower <= search.upper:
            self.lower, self.upper = max(self.tuning.floor, search.lower), search.upper
            self._soft, self._probing, self._descent = False, False, None
            # Not settled, the search goes on from the saved trial; a burst bound that was still
            # loose would make each proof outlast a short run, which then never gets past it.
            self.rate = max(self.tuning.floor, min(self.rate, self.upper))
            if self.upper <= self.lower * self.tuning.precision:
                # Settled, held at a rate proven only to within the proof margin: that far below
                # it, a long hold meets no 429 from a rate proven a little above the limit. Its
                # probes are timed by the burst (a large one hides an overshoot longer), and stay
                # due over runs shorter than the probe interval: a limit settled too low (a stray
                # 429 in the search) or raised since is found again.
                self.rate = max(self.tuning.floor, min(self.rate, self.lower / (1 + _PROOF_MARGIN)))
                if search.burst is not None:
                    self._start_burst = min(self._start_burst, max(1.0, search.burst))
                self._changed_at = resumed - min(max(0.0, search.held), self._probe_wait)
        elif self.ceiling is None and self.upper is None:
            # The search goes on from here: the rate before one cut is the bound that drew a 429,
            # so the new owner proves the persisted rate and climbs back, never bursting.
            self.upper = self._reference

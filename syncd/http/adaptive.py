"""The adaptive rate of one source: cut on a 429, won back on the clock; pure maths on clock readings.

A source with a configured `rate_limit` (its *ceiling*) is paced by that fixed bucket until the API
answers 429 anyway. A 429 then engages the adaptive rate at `decrease` times the rate in use, and
every `recovery_interval` seconds without another cut the rate climbs back by `recovery_step` of
the ceiling, where it is held smoothly.

A source without one is not paced until its first 429; from then on it searches for the store's
limit and settles below it, instead of swinging around it (released at full speed, it drew a 429
each time it came back):

- **Bounds.** `upper` is the rate that drew the last 429 (the store's limit is below it);
  `lower` is the highest rate held for `proof_time` without one (the limit is at or above it).
- **Search.** While nothing is proven the rate is cut by `decrease` squared on each 429; once a lower
  bound exists the next rate tried is the geometric middle of the two bounds. A rate held without
  a 429 for the proof time becomes the new lower bound. The search ends when the bounds are within
  `precision` of each other: the source is then held at `lower`, below the limit it found.
- **Probing.** Held for `probe_interval` without a 429, the upper bound is raised by `probe_step`
  and the middle tried: a store whose limit was raised is followed. A probe that draws a 429
  doubles the wait before the next one, so a steady store sees fewer and fewer of them.

`floor` bounds every cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from syncd.config import HttpSettings

# Below this many seconds of sending since the descent began, nothing was measured.
_ACHIEVED_SPAN = 0.05

ChangeReason = Literal["rate_limited", "recovering", "recovered", "proven", "probing"]


@dataclass(frozen=True, slots=True)
class RateTuning:
    """How hard a 429 cuts a source's rate and how quickly the rate comes back."""

    decrease: float = 0.75
    recovery_step: float = 0.05
    recovery_interval: float = 2.0
    floor: float = 0.1
    # The search for an unconfigured store's limit (see the module doc).
    precision: float = 1.08
    proof_requests: int = 4
    probe_interval: float = 60.0
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

    def proof_time(self, rate: float) -> float:
        """Seconds a rate must be held without a 429 to count as within the store's limit."""
        return max(self.recovery_interval, self.proof_requests / rate)


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
        # As the descent began: when, the answers accepted by then; and the seconds paused since.
        self._descent: tuple[float, int, float] | None = None

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
        if self._probing:
            self._probe_wait *= 2  # the store did not move: look again later, and less often
            self._probing = False
        self.upper = drawn
        if self.lower is not None and self.lower >= drawn:
            # What was proven no longer holds: it was proven too soon (a large burst hid the
            # overshoot), or the store lowered its limit. The limit is most likely just below:
            # step down by twice the precision, and search again from there.
            self.lower = max(self.tuning.floor, drawn / self.tuning.precision**2)
            self.rate = self.lower
            return RateChange(old, round(self.rate, 6), "rate_limited")
        if self.lower is None:
            if self._descent is None:
                self._descent = (now, accepted, 0.0)
            since, before, paused = self._descent
            # Cut twice as hard: nothing is proven, and an unpaced source's rate is far above
            # the limit (each cut costs a 429 and its pause).
            next_rate = drawn * self.tuning.decrease**2
            sending = now - since - paused
            if sending >= _ACHIEVED_SPAN:
                next_rate = min(next_rate, (accepted - before) / sending)
            self._descent = (since, before, paused + max(0.0, self._changed_at - now))
            self.rate = max(self.tuning.floor, next_rate)
        else:
            self.rate = self._next_trial(self.lower, drawn)
        return RateChange(old, round(self.rate, 6), "rate_limited")

    def refused(self, resume_at: float) -> None:
        """A 429 that cut nothing (an answer to a request sent before the last cut) still holds
        the source until `resume_at`: time that proves nothing about the current rate."""
        if self.ceiling is None:
            self._changed_at = max(self._changed_at, resume_at)

    def recover(self, now: float) -> RateChange | None:
        """Apply what the time since the last change brings by `now`, if anything."""
        if self.ceiling is None:
            return self._search(now)
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
        settled = lower is not None and rate <= lower and upper <= lower * self.tuning.precision
        if settled:
            if now - self._changed_at < self._probe_wait:
                return None
            self._changed_at = now
            self._probing = True
            self.upper = max(upper, rate * self.tuning.precision) * (1 + self.tuning.probe_step)
            self.rate = self._next_trial(rate, self.upper)
            return RateChange(rate, round(self.rate, 6), "probing")
        if now - self._changed_at < self.tuning.proof_time(rate):
            return None
        # Held without a 429: the store accepts this rate.
        self._changed_at = now
        if self._probing:
            self._probing = False
            self._probe_wait = self.tuning.probe_interval
        self.lower = max(rate, lower or 0.0)
        self._descent = None
        if upper <= self.lower * self.tuning.precision:
            # A probe that held: the bound above it is only a guess, so keep probing next time.
            self.upper = max(upper, self.lower)
            if rate >= self.lower:
                return None
            self.rate = self.lower
        else:
            self.rate = self._next_trial(self.lower, upper)
        return RateChange(rate, round(self.rate, 6), "proven")

    def _next_trial(self, lower: float, upper: float) -> float:
        """The rate to try between what held and what drew a 429 (the lower one when close)."""
        if upper <= lower * self.tuning.precision:
            return lower
        return max(self.tuning.floor, math.sqrt(lower * upper))

    def resume(self, rate: float | None, now: float, resume_at: float | None = None) -> None:
        """Continue from a rate an earlier owner of the source persisted (None: not engaged);
        recovery counts from `resume_at` (the end of a pause still pending), else `now`. Without
        a ceiling, the reference the rate recovers to is not persisted: the rate before one cut
        (`rate / decrease`) stands in for it."""
        if rate is None:
            self.rate, self._reference = None, self.ceiling
            return
        if self.ceiling is not None:
            rate = min(rate, self.ceiling)
        self.rate = max(self.tuning.floor, rate)
        if self._reference is None:
            self._reference = max(self.rate / self.tuning.decrease, self.tuning.floor)
        if self.ceiling is None and self.upper is None:
            # The search goes on from here: the rate before one cut is the bound that drew a 429,
            # so the new owner proves the persisted rate and climbs back, never bursting.
            self.upper = self._reference
        self._changed_at = max(now, resume_at or now)

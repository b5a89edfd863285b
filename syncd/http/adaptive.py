"""The adaptive rate of one source: cut on a 429, won back step by step; pure maths on clock readings.

A source with a configured `rate_limit` (its *ceiling*) is paced by that fixed bucket until the API
answers 429 anyway; a source without one is not paced at all until then. A 429 engages the adaptive
rate, `decrease` times the rate the source was using (its current adaptive rate, else the ceiling,
else the rate it was measured sending at). Every `recovery_interval` seconds without another cut,
the rate climbs back by `recovery_step` of the *reference* (the ceiling, or the measured rate that
was cut first). Back at the reference, a configured source stays paced smoothly at its ceiling (no
burst that would spend the allowance the server has rebuilt meanwhile); an unconfigured source is
released and runs unpaced again until the next 429. `floor` bounds every cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from syncd.config import HttpSettings

ChangeReason = Literal["rate_limited", "recovering", "recovered"]


@dataclass(frozen=True, slots=True)
class RateTuning:
    """How hard a 429 cuts a source's rate and how quickly the rate comes back."""

    decrease: float = 0.75
    recovery_step: float = 0.05
    recovery_interval: float = 2.0
    floor: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise ValueError("RateTuning.decrease must be within (0, 1)")
        if self.recovery_step <= 0 or self.recovery_interval <= 0 or self.floor <= 0:
            raise ValueError("RateTuning steps, interval and floor must be positive")

    @classmethod
    def from_settings(cls, http: HttpSettings) -> RateTuning:
        """The tuning the `[http]` settings describe."""
        return cls(
            decrease=http.rate_decrease,
            recovery_step=http.rate_recovery_step,
            recovery_interval=http.rate_recovery_interval,
            floor=http.rate_floor,
        )


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

    @property
    def engaged(self) -> bool:
        """True while the adaptive rate paces the source."""
        return self.rate is not None

    def cut(self, now: float, measured: float, resume_at: float | None = None) -> RateChange:
        """A 429 answered a request sent at the current rate: multiply the rate by `decrease`.

        `measured` is the rate the source was sending at, used when neither an adaptive rate nor a
        ceiling says what the source was allowed. Recovery counts from `resume_at` (the end of the
        429's pause): time spent not sending proves nothing about the new rate.
        """
        old = self.rate
        base = old if old is not None else self.ceiling if self.ceiling is not None else measured
        if self._reference is None:
            self._reference = max(base, self.tuning.floor)
        self.rate = max(self.tuning.floor, base * self.tuning.decrease)
        self._changed_at = max(now, resume_at or now)
        return RateChange(old, round(self.rate, 6), "rate_limited")

    def recover(self, now: float) -> RateChange | None:
        """Apply the recovery steps due by `now` (several at once after an idle spell), if any."""
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
        if self.ceiling is None:
            # Unconfigured: nothing says how fast the source may go, so stop pacing it at all.
            self.rate = None
            self._reference = None
            return RateChange(rate, None, "recovered")
        self.rate = reference
        return RateChange(rate, round(reference, 6), "recovered")

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
        self._changed_at = max(now, resume_at or now)

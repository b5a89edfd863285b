"""The circuit breaker of one source: consecutive failed runs push its next run out, exponentially.

Closed while runs succeed. The `threshold`-th failed run in a row opens it: the next run waits at
least `base_delay`, and every further failure doubles that wait, up to `max_delay`. The delayed run
is the probe (half-open); its success closes the breaker and the regular schedule resumes. The
breaker only ever delays a run, never brings one forward. Pure logic: the caller passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.config import SourceSettings


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a failing source is backed off, and by how much."""

    threshold: int = 3
    base_delay: float = 60.0
    max_delay: float = 3600.0

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("BreakerPolicy needs threshold >= 1 and 0 < base_delay <= max_delay")

    @classmethod
    def from_settings(cls, source: SourceSettings) -> BreakerPolicy:
        """The policy of one configured source."""
        return cls(source.breaker_threshold, source.breaker_base_delay, source.breaker_max_delay)

    def delay(self, failures: int) -> float | None:
        """The backoff after `failures` consecutive failed runs (None: not backed off yet)."""
        if failures < self.threshold:
            return None
        # Capped before exponentiating so that months of failures cannot overflow a float.
        doublings = min(failures - self.threshold, 64)
        return min(self.max_delay, self.base_delay * 2.0**doublings)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The breaker opened (or stayed open): no run of the source before `until`."""

    failures: int
    delay: float
    until: datetime


@dataclass(frozen=True, slots=True)
class Recovered:
    """A run succeeded after the breaker had opened."""

    failures: int


class SourceBreaker:
    """Counts one source's consecutive failed runs and says when it must wait."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.failures = 0

    @property
    def is_open(self) -> bool:
        """True while the source is being backed off."""
        return self.failures >= self.policy.threshold

    def failed(self, now: datetime) -> Backoff | None:
        """Record a failed run; the backoff to apply, if the breaker is open."""
        self.failures += 1
        delay = self.policy.delay(self.failures)
        if delay is None:
            return None
        return Backoff(self.failures, delay, now + timedelta(seconds=delay))

    def succeeded(self) -> Recovered | None:
        """Record a successful run; `Recovered` if it closes an open breaker."""
        was_open, failures = self.is_open, self.failures
        self.failures = 0
        return Recovered(failures) if was_open else None

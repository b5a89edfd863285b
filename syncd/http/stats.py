"""Per-run request counters and a latency summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from syncd.http.retry import RetryBudget


@runtime_checkable
class Summarized(Protocol):
    """A throttle that logs one summary of what it did per run."""

    def summarize(self) -> None:
        """Log the summary since the last one, and start counting again."""
        ...


@dataclass(slots=True)
class RequestStats:
    """What one run's requests cost; filled in by the client, read by the engine."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    latencies: list[float] = field(default_factory=list)
    budget: RetryBudget | None = None
    pacers: list[Summarized] = field(default_factory=list)

    @property
    def failure_retries(self) -> int:
        """Retries spent on failures, i.e. not on 429s (those are paced, not budgeted)."""
        return max(0, self.retries - self.rate_limited)

    def may_retry(self) -> bool:
        """True unless this run's retry budget is spent."""
        return self.budget is None or self.budget.allows(self.failure_retries, self.requests)

    def paced_by(self, throttles: Iterable[object]) -> None:
        """Remember the throttles that paced this run's requests, to summarize them at its end."""
        for throttle in throttles:
            # Membership first: an isinstance check against a Protocol walks its members, and
            # this runs for every request.
            if throttle not in self.pacers and isinstance(throttle, Summarized):
                self.pacers.append(throttle)

    def summarize(self) -> None:
        """Each pacing throttle logs its summary of the run (called once, when the run ends)."""
        for pacer in self.pacers:
            pacer.summarize()

    def observe(self, seconds: float) -> None:
        """Record one response time."""
        self.requests += 1
        self.latencies.append(seconds)

    def latency_summary(self) -> dict[str, float]:
        """p50 / p95 / max response time in milliseconds (empty if nothing was sent)."""
        if not self.latencies:
            return {}
        ordered = sorted(self.latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

        return {"p50_ms": pick(0.5), "p95_ms": pick(0.95), "max_ms": round(ordered[-1] * 1000, 1)}

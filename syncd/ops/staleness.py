"""Staleness: how old a source's last successful run may get before an operator should hear of it.

A source is stale when its last success is older than its limit: `stale_after` times the schedule's
period (an interval, or for a cron schedule the longest gap between its upcoming fire times), or
the absolute duration `stale_after` names ("26h"). Everything here is a function of `now`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.config import SourceSettings
from syncd.schedule import IntervalSchedule, Schedule, parse_schedule, to_trigger
from syncd.store import Store

CRON_SAMPLES = 50
"""Upcoming fire times inspected to find a cron schedule's longest gap (weekends, month ends)."""


def schedule_period(schedule: Schedule, now: datetime) -> float:
    """Seconds between runs: the interval, or the longest gap among a cron's next fire times."""
    if isinstance(schedule, IntervalSchedule):
        return float(schedule.seconds)
    trigger: Any = to_trigger(schedule)
    previous: datetime | None = trigger.get_next_fire_time(None, now)
    longest = 0.0
    for _ in range(CRON_SAMPLES):
        if previous is None:
            break
        following: datetime | None = trigger.get_next_fire_time(previous, previous)
        if following is None:
            break
        longest = max(longest, (following - previous).total_seconds())
        previous = following
    return longest


def stale_limit(source: SourceSettings, now: datetime) -> float:
    """Seconds after its last success at which `source` counts as stale."""
    if isinstance(source.stale_after, str):
        absolute = parse_schedule(source.stale_after)
        assert isinstance(absolute, IntervalSchedule)  # the settings validator guarantees it
        return float(absolute.seconds)
    return source.stale_after * schedule_period(source.parsed_schedule, now)


def limits(sources: Iterable[SourceSettings], now: datetime) -> dict[str, float]:
    """The staleness limit of every enabled source (computed once: cron gaps take a little work)."""
    return {s.name: stale_limit(s, now) for s in sources if s.enabled}


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """What an operator needs to know about one source right now."""

    source: str
    last_success_at: datetime | None
    limit_s: float
    age_s: float | None
    stale: bool | None
    needs_reauth: bool
    reauth_reason: str | None

    @property
    def ready(self) -> bool:
        """False if the source waits for an operator or its data is older than its limit."""
        return not self.needs_reauth and not self.stale


def judge(
    last_success: datetime | None, limit_s: float, now: datetime, since: datetime | None
) -> tuple[float | None, bool | None]:
    """(age in seconds, stale?) of data last refreshed at `last_success`.

    A source that never succeeded is measured from `since` (when the daemon started); with no
    `since` either, its staleness is unknown (None).
    """
    reference = last_success or since
    if reference is None:
        return None, None
    age = max(0.0, (now - reference).total_seconds())
    return (age if last_success else None), age > limit_s


async def assess(
    store: Store, limits_s: dict[str, float], now: datetime, since: datetime | None = None
) -> list[SourceHealth]:
    """Health of every source in `limits_s`, read from the store (one small query per source)."""
    report: list[SourceHealth] = []
    for name, limit in limits_s.items():
        state = await store.source_state(name)
        runs = await store.runs(name, "succeeded", limit=1)
        last = _parse(runs[0].finished_at) if runs else None
        age, stale = judge(last, limit, now, since)
        report.append(
            SourceHealth(name, last, limit, age, stale, state.needs_reauth, state.reauth_reason)
        )
    return report


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))

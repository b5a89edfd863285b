"""Schedules as typed values, and their APScheduler 3 triggers (made by `syncd.apscheduler3`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from syncd.apscheduler3 import cron_trigger, interval_trigger

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Run every `seconds` seconds."""

    seconds: int

    def __str__(self) -> str:
        return f"every {self.seconds}s"


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """Run on a 5-field crontab expression, in UTC."""

    expression: str

    def __str__(self) -> str:
        return f"cron '{self.expression}'"


Schedule = IntervalSchedule | CronSchedule


def parse_schedule(text: str) -> Schedule:
    """Parse `"15m"`-style intervals or 5-field cron strings; raise ValueError saying what is expected."""
    match = _INTERVAL.match(text)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        if seconds <= 0:
            raise ValueError("an interval must be longer than 0 seconds")
        return IntervalSchedule(seconds)
    if len(text.split()) == 5:
        try:
            cron_trigger(text)
        except ValueError as exc:
            raise ValueError(f"invalid cron expression ({exc})") from None
        return CronSchedule(text.strip())
    raise ValueError(
        'expected an interval such as "30s", "15m", "6h", "1d" or a 5-field cron string'
    )


def interval_seconds(schedule: Schedule) -> float | None:
    """The nominal period of an interval schedule (None for cron), used for staleness and backoff."""
    return float(schedule.seconds) if isinstance(schedule, IntervalSchedule) else None


def to_trigger(schedule: Schedule) -> Any:
    """The APScheduler 3 trigger for `schedule` (typed `Any`: the library is untyped)."""
    if isinstance(schedule, IntervalSchedule):
        return interval_trigger(schedule.seconds)
    return cron_trigger(schedule.expression)

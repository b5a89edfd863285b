"""The one module that imports APScheduler 3: its scheduler and triggers behind a small surface.

APScheduler 3.x ships no type information, so what syncd uses of it is named here once (typed
`Any` where the library's own objects pass through) and nowhere else.
"""

from __future__ import annotations

from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

__all__ = ["AsyncIOScheduler", "cron_trigger", "interval_trigger"]


def cron_trigger(expression: str) -> Any:
    """The UTC trigger of a 5-field crontab expression; ValueError saying what is wrong."""
    return CronTrigger.from_crontab(expression, timezone="UTC")


def interval_trigger(seconds: int) -> Any:
    """The trigger that fires every `seconds` seconds."""
    return IntervalTrigger(seconds=seconds, timezone="UTC")

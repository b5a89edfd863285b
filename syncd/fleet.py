"""Replicas on PostgreSQL: the schedule kept in the lease rows, and a claimed lease kept alive.

On SQLite one process schedules every source in memory (scheduler.py). On PostgreSQL each
replica polls the `leases` table for due sources (store/postgres_leases.py), runs what it claims
under the lease, renews the lease every third of `lease_seconds` while the run goes on, and
stores the source's next run time, computed here with APScheduler 3's triggers, when it releases.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from syncd.clock import Clock
from syncd.errors import StoreError
from syncd.logging import get_logger
from syncd.schedule import CronSchedule, IntervalSchedule, Schedule, to_trigger
from syncd.store.postgres_leases import Lease, PostgresLeases

log = get_logger(__name__)

_TICK = timedelta(microseconds=1)


def first_run(schedule: Schedule, now: datetime) -> datetime:
    """When a source never run before is first due: now for an interval (as the in-memory
    scheduler does), the next slot for cron."""
    if isinstance(schedule, IntervalSchedule):
        return now
    return next_run(schedule, now, now)


def next_run(schedule: Schedule, due: datetime, now: datetime) -> datetime:
    """The run after the one that fell due at `due`, as of `now`: the first slot of the schedule
    strictly after `now`, so a run that overran several slots runs once (coalesced), and an
    interval keeps its grid from `due`. Computed by APScheduler 3's triggers."""
    if isinstance(schedule, IntervalSchedule):
        from apscheduler.triggers.interval import IntervalTrigger

        grid = IntervalTrigger(seconds=schedule.seconds, start_date=due, timezone="UTC")
        fire = grid.get_next_fire_time(None, now + _TICK)
    else:
        assert isinstance(schedule, CronSchedule)
        fire = to_trigger(schedule).get_next_fire_time(None, now + _TICK)
    if fire is None:  # a trigger with an end: never again, in practice a year on
        return now + timedelta(days=365)
    return fire  # type: ignore[no-any-return]


@asynccontextmanager
async def kept(
    leases: PostgresLeases,
    lease: Lease,
    clock: Clock,
    on_lost: Callable[[str], object],
) -> AsyncIterator[None]:
    """Renew `lease` every third of its length for the block; if a renewal finds it lost (taken
    over, or expired while this process was paused), log it, and call `on_lost(reason)` once a
    lease period later if the block still runs."""

    async def renew() -> None:
        current = lease
        while True:
            await clock.sleep(leases.lease_seconds / 3)
            try:
                renewed = await leases.renew(current)
            except StoreError as exc:
                # The database may be back before the lease runs out: keep trying until then;
                # the fence refuses the run's writes if it is not.
                log.warning("lease.renew_failed", source=lease.source, error=str(exc))
                continue
            if renewed is None:
                holder = await _holder(leases, lease.source)
                reason = f"lease of {lease.source!r} (epoch {lease.epoch}) lost to {holder}"
                log.error("lease.lost", source=lease.source, epoch=lease.epoch, holder=holder)
                # The run's next write is refused by the fence and ends it; only a run that
                # writes nothing for a whole lease (a long Retry-After pause) is cancelled.
                # Cancelling at once would race with the refused write being recorded.
                await clock.sleep(leases.lease_seconds)
                on_lost(reason)
                return
            current = renewed

    task = asyncio.create_task(renew(), name=f"lease-{lease.source}")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _holder(leases: PostgresLeases, source: str) -> str:
    try:
        return await leases.holder(source) or "nobody (it expired)"
    except StoreError:
        return "an unknown replica (the database is unreachable)"

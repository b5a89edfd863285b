"""The APScheduler 3 adapter: jobs are scheduled (not paused), can be moved, coalesce their
missed runs and never run twice at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from syncd.schedule import parse_schedule
from syncd.scheduler import SourceScheduler
from tests.conftest import settle
from tests.support import until


async def job() -> None:
    """A job that is never run by these tests."""


async def test_jobs_without_a_first_run_follow_their_trigger() -> None:
    """Cron and interval jobs given no first run are due at the trigger's next time, not paused."""
    scheduler = SourceScheduler()
    scheduler.add("cron", parse_schedule("0 3 * * *"), job, None)
    scheduler.add("every", parse_schedule("15m"), job, None)
    scheduler.start()
    try:
        now = datetime.now(UTC)
        cron, every = scheduler.next_run("cron"), scheduler.next_run("every")
        assert cron is not None and (cron.hour, cron.minute) == (3, 0)
        assert now < cron <= now + timedelta(days=1)
        assert every is not None and now < every <= now + timedelta(minutes=15)
    finally:
        scheduler.shutdown()


async def test_a_first_run_and_a_reschedule_are_honoured() -> None:
    """first_run sets the first time; reschedule_in moves the next one."""
    scheduler = SourceScheduler()
    soon = datetime.now(UTC) + timedelta(hours=1)
    scheduler.add("job", parse_schedule("15m"), job, soon)
    scheduler.start()
    try:
        assert scheduler.next_run("job") == soon
        later = soon + timedelta(hours=5)
        scheduler.reschedule_in("job", later)
        assert scheduler.next_run("job") == later
    finally:
        scheduler.shutdown()


async def test_missed_runs_are_coalesced_into_one() -> None:
    """Five slots missed (all within the misfire grace) make one run, not five."""
    calls: list[datetime] = []

    async def count() -> None:
        calls.append(datetime.now(UTC))

    scheduler = SourceScheduler()
    first = datetime.now(UTC) - timedelta(minutes=4, seconds=30)
    scheduler.add("job", parse_schedule("1m"), count, first)
    scheduler.start()
    try:
        await until(lambda: len(calls) >= 1)
        await settle()
        assert len(calls) == 1
        upcoming = scheduler.next_run("job")
        assert upcoming is not None and upcoming > datetime.now(UTC)
    finally:
        scheduler.shutdown()


async def test_a_job_still_running_is_not_started_again() -> None:
    """A slot that comes while the job's previous run goes on is skipped, not run alongside."""
    running: list[int] = []
    release = asyncio.Event()

    async def slow() -> None:
        running.append(1)
        await release.wait()

    scheduler = SourceScheduler()
    scheduler.add("job", parse_schedule("1h"), slow, datetime.now(UTC))
    scheduler.start()
    try:
        await until(lambda: len(running) == 1)
        due = datetime.now(UTC)
        scheduler.reschedule_in("job", due)  # the next slot is now, while the first run goes on
        await until(lambda: (scheduler.next_run("job") or due) > due)  # the slot was processed
        await settle()
        assert len(running) == 1
    finally:
        release.set()
        scheduler.shutdown()

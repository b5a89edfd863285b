"""The APScheduler 3 adapter: jobs are scheduled (not paused), can be moved, coalesce their
missed runs and never run twice at once. APScheduler reads a virtual clock (`scheduler_on`):
next runs are exact instants, not windows around the real time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from syncd.schedule import parse_schedule
from syncd.scheduler import SourceScheduler
from tests.clocks import FakeClock, scheduler_on
from tests.conftest import settle
from tests.support import until

START = datetime(2026, 1, 1, 1, 30, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The time of the test, APScheduler's too; it moves only when the test moves it."""
    clock = FakeClock(START)
    scheduler_on(clock, monkeypatch)
    return clock


async def job() -> None:
    """A job that is never run by these tests."""


async def test_jobs_without_a_first_run_follow_their_trigger(clock: FakeClock) -> None:
    """Cron and interval jobs given no first run are due at the trigger's next time, not paused."""
    scheduler = SourceScheduler(clock=clock)
    scheduler.add("cron", parse_schedule("0 3 * * *"), job, None)
    scheduler.add("every", parse_schedule("15m"), job, None)
    scheduler.start()
    try:
        assert scheduler.next_run("cron") == START.replace(hour=3, minute=0)
        assert scheduler.next_run("every") == START + timedelta(minutes=15)
    finally:
        scheduler.shutdown()


async def test_a_first_run_and_a_reschedule_are_honoured(clock: FakeClock) -> None:
    """first_run sets the first time; reschedule_in moves the next one."""
    scheduler = SourceScheduler(clock=clock)
    soon = START + timedelta(hours=1)
    scheduler.add("job", parse_schedule("15m"), job, soon)
    scheduler.start()
    try:
        assert scheduler.next_run("job") == soon
        later = soon + timedelta(hours=5)
        scheduler.reschedule_in("job", later)
        assert scheduler.next_run("job") == later
    finally:
        scheduler.shutdown()


async def test_missed_runs_are_coalesced_into_one(clock: FakeClock) -> None:
    """Five slots missed (all within the misfire grace) make one run, not five; the next is the
    first slot still to come."""
    calls: list[datetime] = []

    async def count() -> None:
        calls.append(clock.now())

    scheduler = SourceScheduler(clock=clock)
    first = START - timedelta(minutes=4, seconds=30)
    scheduler.add("job", parse_schedule("1m"), count, first)
    scheduler.start()
    try:
        await until(lambda: len(calls) >= 1)
        await settle()
        assert calls == [START]
        assert scheduler.next_run("job") == first + timedelta(minutes=5)
    finally:
        scheduler.shutdown()


async def test_a_job_still_running_is_not_started_again(clock: FakeClock) -> None:
    """A slot that comes while the job's previous run goes on is skipped, not run alongside."""
    running: list[int] = []
    release = asyncio.Event()

    async def slow() -> None:
        running.append(1)
        await release.wait()

    scheduler = SourceScheduler(clock=clock)
    scheduler.add("job", parse_schedule("1h"), slow, START)
    scheduler.start()
    try:
        await until(lambda: len(running) == 1)
        clock.advance(60)
        due = clock.now()
        scheduler.reschedule_in("job", due)  # the next slot is now, while the first run goes on
        await until(lambda: (scheduler.next_run("job") or due) > due)  # the slot was processed
        await settle()
        assert len(running) == 1
        assert scheduler.next_run("job") == due + timedelta(hours=1)
    finally:
        release.set()
        scheduler.shutdown()

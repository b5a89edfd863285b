"""The APScheduler 3 adapter: jobs are scheduled (not paused), and can be moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.schedule import parse_schedule
from syncd.scheduler import SourceScheduler


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

"""The schedule against the wall clock: a step back does not stall it, and a job the scheduler has
stopped firing makes the daemon unhealthy. All on an injected clock that APScheduler reads too
(`scheduler_on`), as it reads the system's wall clock outside tests: a step of that clock is a
step for both, and no test waits for a slot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from syncd.config import HealthSettings
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.runtime import Runtime
from syncd.schedule import parse_schedule
from syncd.scheduler import SourceScheduler
from tests.clocks import FakeClock, ManualClock, scheduler_on
from tests.support import adobe_source, settings_for, until

pytestmark = pytest.mark.timeout(30)


START = datetime(2026, 1, 1, 1, 30, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The wall and monotonic time of the test, APScheduler's too."""
    clock = FakeClock(START)
    scheduler_on(clock, monkeypatch)
    return clock


async def never() -> None:
    """A job these tests never let run."""


async def test_a_backward_step_moves_every_next_run_back_by_the_step(clock: FakeClock) -> None:
    """The wall clock steps back 10 minutes: each job keeps its monotonic deadline (its wall
    time moves back by the step), and the step is logged once."""
    scheduler = SourceScheduler(clock=clock)
    first = clock.now() + timedelta(hours=1)
    scheduler.add("shop", parse_schedule("1h"), never, first)
    scheduler.add("shop:full", parse_schedule("0 3 * * *"), never, None)
    scheduler.start()
    try:
        cron = scheduler.next_run("shop:full")
        assert cron is not None
        assert scheduler.realign() == 0.0  # nothing happened yet
        clock.step_wall(-600)
        with capture_logs() as logs:
            assert scheduler.realign() == -600.0
            assert scheduler.realign() == 0.0  # one step, handled once
        assert scheduler.next_run("shop") == first - timedelta(minutes=10)
        assert scheduler.next_run("shop:full") == cron - timedelta(minutes=10)
        [event] = [e for e in logs if e["event"] == "scheduler.clock_stepped"]
        assert (event["log_level"], event["step_s"]) == ("warning", -600.0)
        assert event["jobs_moved"] == ["shop", "shop:full"]
    finally:
        scheduler.shutdown()


async def test_a_forward_step_moves_nothing(clock: FakeClock) -> None:
    """Forward, the jobs are merely late: APScheduler runs them at once, nothing is moved."""
    scheduler = SourceScheduler(clock=clock)
    first = clock.now() + timedelta(hours=1)
    scheduler.add("shop", parse_schedule("1h"), never, first)
    scheduler.start()
    try:
        clock.step_wall(600)
        assert scheduler.realign() == 600.0
        assert scheduler.next_run("shop") == first
    finally:
        scheduler.shutdown()


async def test_the_run_due_when_the_clock_stepped_back_happens_at_its_wake_up(
    clock: FakeClock,
) -> None:
    """The job is due in 10 minutes; 10 minutes pass (monotonic) and meanwhile the wall clock
    steps back 10 minutes, so by the wall clock (APScheduler's) it is still 10 minutes away. The
    timer's wake-up runs it anyway: without the realignment it would wait another 10 minutes."""
    calls: list[datetime] = []

    async def job() -> None:
        calls.append(clock.now())

    scheduler = SourceScheduler(clock=clock)
    scheduler.add("shop", parse_schedule("1h"), job, clock.now() + timedelta(minutes=10))
    scheduler.start()
    try:
        clock.advance(600)
        clock.step_wall(-600)
        scheduler._scheduler.wakeup()  # what APScheduler's monotonic timer does at the deadline
        await until(lambda: len(calls) == 1)
        assert calls == [START]  # the wall time it was due at, once the step was taken back
        assert scheduler.next_run("shop") == START + timedelta(hours=1)
    finally:
        scheduler.shutdown()


async def test_a_job_not_fired_for_more_than_its_period_is_overdue(clock: FakeClock) -> None:
    """Overdue is judged on the monotonic clock: late by more than a period counts, less does
    not, and a wall step forward is no lateness."""
    scheduler = SourceScheduler(clock=clock)
    scheduler.add("shop", parse_schedule("15m"), never, clock.now() + timedelta(minutes=1))
    scheduler.start()
    try:
        clock.step_wall(7200)
        assert scheduler.overdue() == {}
        clock.advance(60 + 900 - 1)
        assert scheduler.overdue() == {}
        clock.advance(2)
        assert scheduler.overdue() == {"shop": 901.0}
    finally:
        scheduler.shutdown()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """A small catalog on loopback."""
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=5), seed=11)) as emulator:
        yield emulator


async def test_healthz_is_unhealthy_while_a_job_is_overdue(
    tmp_path: Path, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up run done, the hourly job's next run is an hour away; two hours later (by the
    daemon's clock) it has not fired: /healthz answers 503 naming the job and how late it is."""
    clock = ManualClock(START)
    scheduler_on(clock, monkeypatch)
    settings = settings_for(tmp_path / "s.db", adobe_source(emu, schedule="1h"))
    settings = settings.model_copy(update={"health": HealthSettings(enabled=True, port=0)})

    async def healthz(daemon: Daemon) -> tuple[int, dict[str, object]]:
        assert daemon.health is not None
        url = f"http://127.0.0.1:{daemon.health.port}/healthz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.json()

    async with Runtime(settings, clock) as runtime, Daemon(runtime, handle_signals=False) as daemon:
        await until(lambda: len(daemon.results) == 1)
        status, body = await healthz(daemon)
        assert (status, body["alive"], body["scheduler"], body["overdue_s"]) == (
            200,
            True,
            "running",
            {},
        )
        clock.advance(2 * 3600 + 5)
        status, body = await healthz(daemon)
        assert (status, body["alive"], body["scheduler"]) == (503, False, "overdue")
        overdue = body["overdue_s"]
        assert isinstance(overdue, dict) and list(overdue) == ["shop"]
        assert 3600 < overdue["shop"] <= 3605 + 1

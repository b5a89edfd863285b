"""The daemon: one run of a source at a time; the breaker moves a failing source's jobs out, never in."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.config import HttpSettings
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.runtime import Runtime
from tests.clocks import ManualClock, scheduler_on
from tests.conftest import settle
from tests.support import adobe_source, query, settings_for, until

FAST = HttpSettings(max_attempts=2, backoff_base=0.001, backoff_cap=0.01)
Started = Callable[..., AbstractAsyncContextManager[tuple[Daemon, list[MutableMapping[str, Any]]]]]


@pytest.fixture
async def refusing() -> AsyncIterator[Emulator]:
    """An emulator whose token endpoint refuses the client: every run fails at once."""
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=5))) as emu:
        emu.adobe.set_client_disabled(True)
        yield emu


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The daemon's time, APScheduler's too: next runs are exact instants of it."""
    clock = ManualClock(datetime(2026, 1, 1, 1, 30, tzinfo=UTC))  # its sleeps wait for the test
    scheduler_on(clock, monkeypatch)
    return clock


@pytest.fixture
def failed_once(tmp_path: Path, refusing: Emulator, clock: ManualClock) -> Started:
    """A daemon on one source whose first run (at start) has failed and been accounted for."""

    @asynccontextmanager
    async def start(**source: Any) -> AsyncIterator[tuple[Daemon, list[MutableMapping[str, Any]]]]:
        settings = settings_for(tmp_path / "d.db", adobe_source(refusing, **source), http=FAST)
        with capture_logs() as logs:
            async with (
                Runtime(settings, clock) as runtime,
                Daemon(runtime, handle_signals=False) as d,
            ):
                await until(lambda: any(e["event"] == "sync.finished" for e in logs))
                # The breaker is fed right after the run: wait for its word, or for the job's end.
                await until(lambda: any(e["event"] == "source.backoff" for e in logs) or (
                    d.next_run("shop") is not None and len(d.results) == 1
                ))  # fmt: skip
                await settle()  # whatever the breaker does after the run has been done
                yield d, logs

    return start


def seconds_after(clock: ManualClock, when: datetime | None) -> float:
    """Seconds from the clock's now to `when`."""
    assert when is not None
    return (when - clock.now()).total_seconds()


async def test_a_backoff_longer_than_the_schedule_moves_every_job_of_the_source(
    failed_once: Started, clock: ManualClock
) -> None:
    """2 h of backoff on an hourly source with a nightly full: both jobs wait at least 2 h."""
    async with failed_once(
        schedule="1h", full_schedule="0 3 * * *",
        breaker_threshold=1, breaker_base_delay=7200, breaker_max_delay=7200,
    ) as (daemon, logs):  # fmt: skip
        backoff = next(e for e in logs if e["event"] == "source.backoff")
        assert (backoff["source"], backoff["failures"], backoff["delay_s"]) == ("shop", 1, 7200)
        assert "invalid_client" in backoff["error"]
        assert seconds_after(clock, daemon.next_run("shop")) == 7200
        assert seconds_after(clock, daemon.next_run("shop:full")) == 7200


async def test_a_backoff_shorter_than_the_schedule_changes_nothing(
    failed_once: Started, clock: ManualClock
) -> None:
    """A 60 s backoff never brings an hourly run forward: the schedule stands, the log says so."""
    async with failed_once(schedule="1h", breaker_threshold=1, breaker_base_delay=60) as (
        daemon,
        logs,
    ):
        backoff = next(e for e in logs if e["event"] == "source.backoff")
        assert seconds_after(clock, daemon.next_run("shop")) == 3600
        assert backoff["next_run"] == daemon.next_run("shop").isoformat()  # type: ignore[union-attr]


async def test_below_the_threshold_nothing_is_backed_off(
    failed_once: Started, clock: ManualClock
) -> None:
    """One failure with the default threshold of 3: no backoff line, the schedule as it was."""
    async with failed_once(schedule="1h") as (daemon, logs):
        assert not [e for e in logs if e["event"] == "source.backoff"]
        assert seconds_after(clock, daemon.next_run("shop")) == 3600


async def test_a_source_never_runs_twice_at_once(tmp_path: Path) -> None:
    """While the start-up run is going, a second trigger (the full job's slot) is skipped."""
    config = EmulatorConfig(adobe=AdobeConfig(products=300, latency=0.01))
    async with Emulator(config) as emu:
        settings = settings_for(tmp_path / "o.db", adobe_source(emu, schedule="1h"), http=FAST)
        with capture_logs() as logs:
            async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as d:
                await until(lambda: any(e["event"] == "sync.started" for e in logs))
                await d.trigger("shop", "full")
                skipped = [e for e in logs if e["event"] == "sync.skipped"]
                assert [(e["reason"], e["kind"]) for e in skipped] == [("already_running", "full")]
                await until(lambda: len(d.results) == 1)
        assert [r.ok for r in d.results] == [True]
        runs = query(tmp_path / "o.db", "SELECT count(*) FROM sync_runs")
        assert runs == [(1,)]


@pytest.mark.parametrize(("grace", "status"), [(10.0, "succeeded"), (0.0, "cancelled")])
async def test_a_stop_during_a_run_drains_it_without_a_scheduler_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, grace: float, status: str
) -> None:
    """Stop mid-run: the run finishes within the grace or is cancelled, its job ends normally
    (breaker and monitor bookkeeping run) and APScheduler logs no 'raised an exception'."""
    config = EmulatorConfig(adobe=AdobeConfig(products=300, latency=0.01))
    async with Emulator(config) as emu:
        source = adobe_source(emu, schedule="1h", max_concurrency=2)
        settings = settings_for(tmp_path / "g.db", source, http=FAST, shutdown_grace=grace)
        with capture_logs() as logs:
            async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as d:
                after_runs: list[int] = []
                original = d.monitor.after_run

                async def counted() -> None:
                    after_runs.append(1)
                    await original()

                d.monitor.after_run = counted  # type: ignore[method-assign]
                await until(lambda: any(e["event"] == "sync.started" for e in logs))
                d.stop()
    (finished,) = [e for e in logs if e["event"] == "sync.finished"]
    assert finished["status"] == status
    assert after_runs == [1]
    assert query(tmp_path / "g.db", "SELECT status FROM sync_runs") == [(status,)]
    # (The emulator's own server may log the dropped connection of a cancelled request.)
    scheduler = [r for r in caplog.records if r.name.startswith("apscheduler")]
    assert [r.getMessage() for r in scheduler if r.levelno >= logging.WARNING or r.exc_info] == []
    assert not [e for e in logs if e["event"] == "sync.crashed"]


async def test_the_daemon_keeps_only_its_recent_results(
    tmp_path: Path, refusing: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`results` holds the last RECENT_RESULTS runs without latencies; the stop line still counts
    every run of the daemon's life."""
    monkeypatch.setattr("syncd.daemon.RECENT_RESULTS", 2)
    settings = settings_for(tmp_path / "r.db", adobe_source(refusing, schedule="1h"), http=FAST)
    with capture_logs() as logs:
        async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as d:
            # The result is recorded inside the run: wait for the run to end too, or a trigger
            # could find the source still running and be skipped.
            await until(lambda: len(d.results) == 1 and not d.running("shop"))
            for _ in range(3):
                await d.trigger("shop")
            ids = [r.run_id for r in d.results]
            assert len(ids) == 2 and ids == sorted(ids)
            assert all(r.latencies == () for r in d.results)
    stopped = next(e for e in logs if e["event"] == "daemon.stopped")
    assert (stopped["runs"], stopped["failed"]) == (4, 4)
    assert ids[-1] == query(tmp_path / "r.db", "SELECT max(id) FROM sync_runs")[0][0]

"""The daemon prunes run history and token events past `[store] history_retention`, at most hourly,
after runs, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd.config.settings import StoreSettings
from syncd.daemon import HISTORY_PRUNE_INTERVAL, Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.errors import StoreError
from syncd.runtime import Runtime
from syncd.store import RunTotals, TokenEvent
from syncd.store.factory import AnyStore, open_store
from syncd.store.history import RUNS_KEPT
from tests.clocks import ManualClock
from tests.support import adobe_source, settings_for, until

pytestmark = pytest.mark.timeout(30)
DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    """Each backend, with a 10-day history retention."""
    if request.param == "sqlite":
        return StoreSettings(path=tmp_path / "d.db", history_retention=10 * DAY)
    url = request.getfixturevalue("postgres_url")
    return StoreSettings(url=url, history_retention=10 * DAY)


async def old_runs(store: AnyStore, source: str, start: datetime, count: int) -> None:
    """`count` failed runs of `source` from `start`, a minute apart."""
    for i in range(count):
        at = start + timedelta(minutes=i)
        run_id = await store.start_run(source, "incremental", at)
        await store.finish_run(run_id, "failed", RunTotals(), at + timedelta(seconds=5), "down")


async def test_the_daemon_prunes_history_after_a_run_then_hourly(
    store_settings: StoreSettings,
) -> None:
    """The first run's aftermath removes what is past retention (the newest runs of a source and
    a source's only run stay); another prune within the hour does nothing, one after it removes
    what has expired since, but not the source's last success."""
    clock = ManualClock(datetime.now(UTC))  # APScheduler fires on real time: the two agree
    old = clock.now() - timedelta(days=20)
    async with open_store(store_settings) as seed:
        await old_runs(seed, "shop", old, 10)
        await old_runs(seed, "retired", old, 1)
        for i in range(5):
            await seed.add_token_event(TokenEvent("shop", old + timedelta(hours=i), "invalidated"))
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=12))) as emu:
        settings = settings_for(Path("unused.db"), adobe_source(emu))
        settings = settings.model_copy(update={"store": store_settings})
        with capture_logs() as logs:
            async with (
                Runtime(settings, clock) as runtime,
                Daemon(runtime, handle_signals=False) as d,
            ):
                await until(lambda: any(e["event"] == "history.pruned" for e in logs))
                store = runtime.store
                # The daemon's own run is the newest of "shop": RUNS_KEPT - 1 old ones stay.
                assert len(await store.runs("shop")) == RUNS_KEPT
                assert len(await store.runs("retired")) == 1
                invalidated = await store.token_events("shop", event="invalidated")
                assert len(invalidated) == 1
                assert (await store.token_event_counts())["shop", "invalidated"] == 5

                await old_runs(store, "shop", clock.now(), 4)
                clock.advance(HISTORY_PRUNE_INTERVAL - 1)
                await d.prune_history()  # within the hour: not yet
                assert len(await store.runs("shop")) == RUNS_KEPT + 4
                clock.advance(10 * DAY)  # every run is past retention now
                await d.prune_history()
                # The four newest stay, the newest of them failed: so does the daemon's success.
                kept = await store.runs("shop")
                assert [r.status for r in kept] == ["failed"] * RUNS_KEPT + ["succeeded"]
    pruned = [e for e in logs if e["event"] == "history.pruned"]
    assert [(e["runs"], e["token_events"]) for e in pruned] == [
        (10 - (RUNS_KEPT - 1), 4),
        (RUNS_KEPT - 1 + 4 - RUNS_KEPT, 0),
    ]
    assert pruned[0]["retention_s"] == 10 * DAY
    assert [r for r in d.results if r.source == "shop"]


async def test_a_failed_prune_is_logged_and_the_daemon_goes_on(tmp_path: Path) -> None:
    """The database refusing the prune costs one error line; the run and the daemon are fine."""

    async def refuse(before: datetime) -> int:
        raise StoreError("cannot prune sync_runs: disk I/O error")

    clock = ManualClock(datetime.now(UTC))
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=3))) as emu:
        settings = settings_for(tmp_path / "d.db", adobe_source(emu))
        with capture_logs() as logs:
            async with (
                Runtime(settings, clock) as runtime,
                Daemon(runtime, handle_signals=False) as d,
            ):
                runtime.store.prune_runs = refuse  # type: ignore[method-assign]
                await until(lambda: any(e["event"] == "history.prune_failed" for e in logs))
    failed = next(e for e in logs if e["event"] == "history.prune_failed")
    assert failed["error"] == "cannot prune sync_runs: disk I/O error"
    assert [r.ok for r in d.results] == [True]

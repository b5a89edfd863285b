"""The daemon on PostgreSQL: the schedule lives in the lease rows (docs/SCALING.md). A run's
release stores the next slot on the interval's grid; a failing source is backed off there, so
whichever replica polls next honours it. The clock is manual: only the first poll runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from syncd.config import HttpSettings, StoreSettings
from syncd.daemon import FIRST_RUN_SPACING, Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.runtime import Runtime
from tests.clocks import ManualClock
from tests.conftest import settle
from tests.support import adobe_source, settings_for, until

FAST = HttpSettings(max_attempts=2, backoff_base=0.001, backoff_cap=0.01)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=30), seed=2)) as emulator:
        yield emulator


def lease_row(url: str) -> tuple[object, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT owner, epoch, next_run_at, claimed_at, clock_timestamp() FROM leases"
        ).fetchone()
    assert row is not None
    return tuple(row)


async def run_first_poll(
    emu: Emulator, url: str, tmp_path: Path, schedule: str, **source: Any
) -> list[dict[str, Any]]:
    settings = settings_for(
        tmp_path / "unused.db",
        adobe_source(emu, schedule=schedule, page_size=10, **source),
        http=FAST,
    ).model_copy(update={"store": StoreSettings(url=url)})
    with capture_logs() as logs:
        async with (
            Runtime(settings, clock=ManualClock()) as runtime,
            Daemon(runtime, handle_signals=False),
        ):
            await until(lambda: any(e["event"] in ("lease.released",) for e in logs))
            await settle()
    return [dict(e) for e in logs]


async def test_a_run_stores_the_next_slot_on_the_grid_and_releases_the_lease(
    emu: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    logs = await run_first_poll(emu, postgres_url, tmp_path, "1h")
    owner, epoch, next_run_at, claimed_at, now = lease_row(postgres_url)
    assert owner is None and epoch == 1
    assert any(e["event"] == "sync.finished" and e["status"] == "succeeded" for e in logs)
    # Due at the join (database time), next exactly one interval later on that grid.
    assert timedelta(minutes=59) < next_run_at - now <= timedelta(hours=1)  # type: ignore[operator]
    assert next_run_at - claimed_at < timedelta(hours=1)  # type: ignore[operator]


async def test_a_failing_source_is_backed_off_in_the_shared_schedule(
    emu: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    emu.adobe.set_client_disabled(True)  # every run fails at its token
    logs = await run_first_poll(emu, postgres_url, tmp_path, "1s", breaker_threshold=1)
    (backoff,) = [e for e in logs if e["event"] == "source.backoff"]
    _, _, next_run_at, _, now = lease_row(postgres_url)
    # Not the 1 s slot: the breaker's delay, stored for every replica to honour.
    assert next_run_at - now > timedelta(seconds=backoff["delay_s"] - 5)  # type: ignore[operator]
    assert backoff["delay_s"] > 5


async def test_interval_sources_first_runs_are_spread_as_on_one_process(
    emu: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    """Sources first due at one instant would stay aligned on one grid and start every round as
    a herd: the lease rows start them FIRST_RUN_SPACING apart (a cron source keeps its slot)."""
    names = [f"s{n}" for n in range(4)]
    sources = [adobe_source(emu, name=name, schedule="1h", page_size=10) for name in names]
    cron = adobe_source(emu, name="nightly", schedule="0 3 * * *")
    settings = settings_for(tmp_path / "unused.db", *sources, cron, http=FAST).model_copy(
        update={"store": StoreSettings(url=postgres_url)}
    )
    with capture_logs() as logs:
        async with (
            Runtime(settings, clock=ManualClock()) as runtime,
            Daemon(runtime, handle_signals=False),
        ):
            await until(lambda: any(e["event"] == "fleet.joined" for e in logs))
            await settle()
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT source, next_run_at FROM leases").fetchall()
    due: dict[str, datetime] = dict(found)
    # A run moves its source's next run by whole intervals on the grid it started on.
    offsets = [(due[name] - due["s0"]) % timedelta(hours=1) for name in names]
    assert offsets == [timedelta(seconds=n * FIRST_RUN_SPACING) for n in range(4)]
    assert due["nightly"].hour == 3 and due["nightly"].minute == 0

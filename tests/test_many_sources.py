"""Many sources in one daemon: the monitor after a run re-reads only the sources that ran (reading
every one after every run made a cycle cost store queries quadratic in their number), and interval
sources' first runs are spread out (all due at one instant, they ran all at once every cycle)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.clock import FakeClock
from syncd.config import AdobeCommerceSourceSettings, ImsAuthSettings, Settings, StoreSettings
from syncd.daemon import FIRST_RUN_SPACING, _first_delay
from syncd.ops.monitor import Monitor
from syncd.store import RunRecord, RunTotals, SourceState
from syncd.sync import SyncResult


@dataclass
class CountingStore:
    """The store queries the monitor makes, counted per source."""

    reads: list[str] = field(default_factory=list)

    async def source_state(self, source: str) -> SourceState:
        self.reads.append(source)
        return SourceState(source)

    async def runs(self, source: str, *args: Any, **kwargs: Any) -> list[RunRecord]:
        return []

    async def last_runs(self) -> list[RunRecord]:
        return []


def settings(count: int) -> Settings:
    sources = tuple(
        AdobeCommerceSourceSettings(
            name=f"s{n}",
            kind="adobe_commerce",
            base_url="http://127.0.0.1:9",  # type: ignore[arg-type]
            schedule="30s",
            auth=ImsAuthSettings(
                token_url="http://127.0.0.1:9/ims",  # type: ignore[arg-type]
                client_id="id",
                client_secret="secret",  # type: ignore[arg-type]
                org_id="org@AdobeOrg",
            ),
        )
        for n in range(count)
    )
    return Settings(store=StoreSettings(path=Path("unused.db")), sources=sources)


async def test_after_a_run_only_the_source_that_ran_is_read_again(clock: FakeClock) -> None:
    """50 sources: the first check reads them all once; after that, a run of one source reads
    that source only (it used to read all 50, twice)."""
    store = CountingStore()
    results: list[SyncResult] = []
    monitor = Monitor(settings(50), store, clock, results, lambda: True)  # type: ignore[arg-type]
    async with monitor:
        await monitor.check_staleness()
        assert len(store.reads) == 50
        store.reads.clear()
        for name in ("s7", "s7", "s31"):
            results.append(_finished(name))
            await monitor.after_run()
        assert store.reads == ["s7", "s7", "s31"]


def _finished(source: str) -> SyncResult:
    return SyncResult(
        run_id=1,
        source=source,
        kind="full",
        status="succeeded",
        totals=RunTotals(),
        duration=0.1,
        error=None,
        latency={},
        latencies=(),
    )


@pytest.mark.parametrize(
    ("among", "interval", "spacing"),
    [(1, 30, 0.0), (10, 30, FIRST_RUN_SPACING), (1000, 120, FIRST_RUN_SPACING), (1000, 10, 0.01)],
)
def test_first_runs_of_interval_sources_are_spread_within_the_interval(
    among: int, interval: float, spacing: float
) -> None:
    """One source syncs at once; many start at most 50 ms apart, all inside the first interval."""
    delays = [_first_delay(i, among, interval) for i in range(among)]
    assert delays[0] == 0.0 and delays[-1] < interval
    assert all(b - a == pytest.approx(spacing) for a, b in itertools.pairwise(delays))

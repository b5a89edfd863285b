"""The fault lab: an emulator, a runtime (or a daemon) on one database, and the checks every
scenario makes on the data afterwards: nothing lost, nothing duplicated, previous data intact."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from syncd.clock import Clock
from syncd.config import AdobeCommerceSourceSettings, HttpSettings, Settings, StoreSettings
from syncd.daemon import Daemon, Runtime
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.http import RequestStats
from syncd.sync import ProgressCallback, SyncResult
from tests.faults.scenarios import SCENARIO_IDS
from tests.support import adobe_source, stored_products, until

# Realistic retry timing: every sleep is on the lab's fake clock, so it costs no wall time.
LAB_HTTP = HttpSettings(max_attempts=6, backoff_base=0.5, backoff_cap=30.0)


@dataclass(frozen=True, slots=True)
class DataCheck:
    """The database against the emulator's catalog."""

    lost: int  # in the catalog, but not stored, or stored with another payload
    duplicated: int  # a sku or a product id stored twice
    unexpected: int  # stored and live, but not in the catalog
    tombstoned: int  # marked deleted

    @property
    def exact(self) -> bool:
        """The store holds the catalog, all of it, once."""
        return self == DataCheck(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What one scenario measured; one row of the reliability report."""

    scenario: str
    runs: list[str]
    requests: int
    retries: int
    rate_limited: int
    token_requests: int
    faults_injected: int
    lost: int
    duplicated: int
    outcome: str
    wall_seconds: float

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the results file."""
        return asdict(self)


@dataclass
class FaultLab:
    """Builds one scenario's world on an `AsyncExitStack`; closed when the test ends."""

    tmp_path: Path
    stack: AsyncExitStack
    clock: Clock
    sink: list[ScenarioResult]
    emulators: list[Emulator] = field(default_factory=list)
    results: list[SyncResult] = field(default_factory=list)
    direct: list[RequestStats] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    runtime: Runtime | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def db(self) -> Path:
        """The lab's SQLite file."""
        return self.tmp_path / "syncd.db"

    @property
    def emu(self) -> Emulator:
        """The first emulator started."""
        return self.emulators[0]

    async def start_emulator(self, products: int = 300, seed: int = 11, **adobe: Any) -> Emulator:
        """An Adobe emulator on a free loopback port, on the lab's clock."""
        config = EmulatorConfig(adobe=AdobeConfig(products=products, **adobe), seed=seed)
        emu = await self.stack.enter_async_context(Emulator(config, clock=self.clock))
        self.emulators.append(emu)
        return emu

    def source(
        self, name: str = "shop", emu: Emulator | None = None, **overrides: Any
    ) -> AdobeCommerceSourceSettings:
        """A source on `emu` (the first emulator): 10 products a page, 4 workers, every second."""
        fields: dict[str, Any] = {"page_size": 10, "max_concurrency": 4, "schedule": "1s"}
        fields.update(overrides)
        return adobe_source(emu or self.emu, name, **fields)

    async def open(
        self, *sources: AdobeCommerceSourceSettings, http: HttpSettings = LAB_HTTP
    ) -> Runtime:
        """The runtime every run of the scenario shares, like one daemon process."""
        settings = Settings(
            store=StoreSettings(path=self.db),
            sources=sources or (self.source(),),
            http=http,
            shutdown_grace=2.0,
        )
        self.runtime = await self.stack.enter_async_context(
            Runtime(settings, clock=self.clock, rng=random.Random(5))
        )
        return self.runtime

    async def sync(
        self, name: str = "shop", kind: str | None = None, progress: ProgressCallback | None = None
    ) -> SyncResult:
        """One run now, recorded."""
        assert self.runtime is not None, "open() the lab's runtime first"
        result = await self.runtime.sync(name, kind, progress)  # type: ignore[arg-type]
        self.results.append(result)
        return result

    async def daemon(self) -> Daemon:
        """A daemon on the lab's runtime, without signal handlers; drained when the test ends."""
        assert self.runtime is not None, "open() the lab's runtime first"
        daemon = await self.stack.enter_async_context(Daemon(self.runtime, handle_signals=False))
        self.daemons.append(daemon)
        return daemon

    async def until(self, predicate: Callable[[], bool], limit: float = 10.0) -> None:
        """Wait (bounded) for the daemon's scheduler to make `predicate` true."""
        await until(predicate, limit)

    def stored(self, name: str = "shop") -> dict[str, dict[str, Any]]:
        """sku -> payload of the live products of `name`."""
        return stored_products(self.db, name)

    def check(self, name: str = "shop", emu: Emulator | None = None) -> DataCheck:
        """Compare the stored products of `name` with the catalog of `emu` (the first one)."""
        catalog = (emu or self.emu).adobe.catalog.snapshot()
        stored = self.stored(name)
        with sqlite3.connect(self.db) as conn:
            rows, skus, ids, distinct_ids, tombstoned = conn.execute(
                "SELECT count(*), count(DISTINCT sku), count(id), count(DISTINCT id), "
                "count(deleted_at) FROM products WHERE source = ?",
                (name,),
            ).fetchone()
        lost = sum(1 for sku, item in catalog.items() if stored.get(sku) != item)
        return DataCheck(
            lost=lost,
            duplicated=(rows - skus) + (ids - distinct_ids),
            unexpected=len(stored.keys() - catalog.keys()),
            tombstoned=tombstoned,
        )

    def intact(self, before: dict[str, dict[str, Any]], name: str = "shop") -> bool:
        """Every product stored before is still stored, live, with the same payload."""
        after = self.stored(name)
        return all(after.get(sku) == item for sku, item in before.items())

    def integrity(self) -> str:
        """SQLite's own verdict on the file ("ok" when sound)."""
        with sqlite3.connect(self.db) as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def record(
        self, scenario: str, outcome: str, check: DataCheck, *, crashed: int = 0
    ) -> ScenarioResult:
        """Add this scenario's figures to the session's results.

        `crashed` counts daemon runs that the store refused before a run row existed (they have
        no `SyncResult`); they are listed between the direct runs and the daemon's.
        """
        assert scenario in SCENARIO_IDS, f"{scenario!r} is not listed in scenarios.py"
        daemon_runs = [r for d in self.daemons for r in d.results]
        runs = [*self.results, *daemon_runs]
        totals = [r.totals for r in runs]
        stats = self.direct
        several = len({r.source for r in runs}) > 1
        statuses = [f"{r.source}: {r.status}" if several else r.status for r in self.results]
        statuses += ["crashed (store refused the run)"] * crashed
        statuses += [f"{r.source}: {r.status}" if several else r.status for r in daemon_runs]
        result = ScenarioResult(
            scenario=scenario,
            runs=statuses,
            requests=sum(t.requests for t in totals) + sum(s.requests for s in stats),
            retries=sum(t.retries for t in totals) + sum(s.retries for s in stats),
            rate_limited=sum(t.rate_limited for t in totals) + sum(s.rate_limited for s in stats),
            token_requests=sum(e.adobe.stats.token_requests for e in self.emulators),
            faults_injected=sum(e.adobe.stats.faults_injected for e in self.emulators),
            lost=check.lost,
            duplicated=check.duplicated,
            outcome=outcome,
            wall_seconds=round(time.perf_counter() - self.started, 2),
        )
        self.sink.append(result)
        return result

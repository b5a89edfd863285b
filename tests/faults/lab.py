"""The fault lab: an emulator, a daemon on one database, and the checks every scenario makes.

Every scenario starts from a good first sync (the daemon's start-up run), changes the catalog a
little, injects its fault, runs the source the way the daemon's jobs do (`Daemon.trigger`), and
checks the run, the data (nothing lost, nothing duplicated, what was stored before intact), the
credentials (`leaks`: none in the log output, the database, /metrics, a run's error, or at another
origin) and the daemon (alive, the source still scheduled). What the lab did and saw becomes the
scenario's row in docs/RELIABILITY.md: nothing in a row is typed by the test.

A scenario records its row (`conclude`) before it asserts anything: its own checks made before
then go through `expect`, which keeps the ones that fail for the row's outcome, so a failing row
can be rendered; `assert_recorded` (or `finish`, which is both) then fails on them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable, MutableMapping
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from syncd.config import AdobeCommerceSourceSettings, HttpSettings, Settings, StoreSettings
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.emulator.faults import PAGE_FAULTS
from syncd.http import RequestStats
from syncd.logging import configure_logging
from syncd.runtime import Runtime
from syncd.store.base import RunKind
from syncd.sync import SyncResult
from tests.clocks import VirtualClock
from tests.elsewhere import Elsewhere
from tests.faults.scenarios import SCENARIO_IDS
from tests.support import adobe_source, stored_products, until

# Realistic retry timing: every wait is on the lab's virtual clock, so it costs no wall time.
LAB_HTTP = HttpSettings(max_attempts=6, backoff_base=0.5, backoff_cap=30.0)
# Long enough that the scheduler never fires on its own during a test after the start-up run:
# later runs are triggered, exactly as the daemon's jobs trigger them.
LAB_SCHEDULE = "1h"

Event = MutableMapping[str, Any]
# Seconds between the churn before a fault and the faulted run (more than the default overlap).
CHURN_AGE = 600.0


class LabClock(VirtualClock):
    """The lab's virtual clock: `VirtualClock` on its "auto" rule (the time jumps to the next
    deadline only when the event loop is idle, so while one worker waits out a 429 the others'
    requests are stamped at the time they really happen), plus a structlog stamp.

    The daemon's periodic loops (the monitor's staleness check, a watchdog) would keep the time
    jumping a minute at a time whenever the lab is idle: they are parked until the daemon
    cancels them (staleness is tested in tests/test_monitoring_catalogue.py).
    """

    PARKED_TASKS = frozenset({"staleness-check", "watchdog"})

    def __init__(self, start: datetime) -> None:
        super().__init__(start, advance="auto", parked=self.PARKED_TASKS)
        # How many requests the emulators have logged: stamped on each log event as `served`.
        self.activity: Callable[[], tuple[int, int]] = lambda: (0, 0)

    def stamp(self, _: Any, __: str, event: Event) -> Event:
        """A structlog processor: when the event was logged, on the lab's time (`at`) and in the
        emulators' request logs (`served`: how many requests they had logged by then)."""
        event["at"] = self.monotonic()
        event["served"] = self.activity()[1]
        return event


@dataclass(frozen=True, slots=True)
class DataCheck:
    """The database against what it should hold, at one moment of a scenario."""

    lost: int  # should be stored, but is not, or is stored with another payload
    duplicated: int  # a sku or a product id stored twice
    unexpected: int  # stored and live, but not in the catalog
    tombstoned: int  # marked deleted while the catalog still has it

    @property
    def exact(self) -> bool:
        """Nothing lost, duplicated, unexpected or tombstoned."""
        return self == DataCheck(0, 0, 0, 0)


# The error classes of the report's Runs column, tried in order on a failed run's error text.
ERROR_CLASSES: tuple[tuple[str, str], ...] = (
    (r"tombstones skipped", "tombstones skipped"),
    (r"retry budget exhausted", "retry budget"),
    (r"timed out after", "timeout"),
    (r"invalid_client", "invalid_client"),
    (r"malformed or truncated JSON", "bad JSON body"),
    (r"an HTML page", "HTML page"),
    (r"database or disk is full", "disk full"),
    (r"readonly database", "read-only database"),
    (r"refused with HTTP 401", "HTTP 401"),
    (r"answered HTTP (3\d\d), a redirect", r"redirect \1"),
    (r"over max_body_size", "body over max_body_size"),
    (r"above max_catalog_size", "total_count above max_catalog_size"),
    (r"answered HTTP (\d{3})", r"HTTP \1"),
    (r"Connection reset|ServerDisconnected", "connection lost"),
    (r"stopped by (SIG[A-Z]+)", r"\1"),
    (r"was deleted since syncd opened it", "database deleted"),
    (r"was replaced by another file", "database replaced"),
)


def error_class(error: str) -> str:
    """A short name for what an error says went wrong (the text itself if none matches)."""
    for pattern, name in ERROR_CLASSES:
        found = re.search(pattern, error)
        if found:
            return found.expand(name)
    return error[:60]


def describe(fault: Fault) -> str:
    """What an emulator `Fault` does, in words, from its fields."""
    if fault.kind in PAGE_FAULTS:
        return _describe_page(fault)
    what = {
        "status": f"HTTP {fault.status}",
        "html": f"an HTML {fault.status} page",
        "slow": f"{fault.delay * 1000:.0f} ms late",
        "truncated": "cut half way",
        "malformed": "HTTP 200, a body that is not JSON",
        "disconnect": "connection closed unanswered",
        "reset": "connection reset (RST)",
        "json": f"HTTP 200, the body {fault.body[:80]}",
        "echo": f"HTTP {fault.status} whose body echoes the request's credentials",
        "redirect": f"HTTP {fault.status} to another origin",
        "oversized": f"a {fault.size / 2**20:g} MiB body (streamed, no Content-Length)",
        "huge_total": f"the real page with total_count {_power(fault.total)}",
        "nested": f"HTTP 200, JSON nested {fault.depth:,} levels deep",
    }.get(fault.kind, fault.kind.replace("_", " "))  # a kind added since: at least its name
    if fault.kind == "status" and fault.retry_after is not None:
        what += f", Retry-After: {fault.retry_after}"
    target = "API" if fault.target == "api" else "token endpoint"
    if fault.probability < 1:
        share = f"{fault.probability:.0%} of the {target} answers"
        if fault.times is not None:
            share += f" ({fault.times} at most)"
    elif fault.times is not None:
        share = f"{fault.times} {target} answer{'s' if fault.times > 1 else ''}"
    else:
        share = f"every {target} answer"
    if fault.after:
        share += f" after the first {fault.after}"
    if fault.reused_only:
        share += " on reused keep-alive connections"
    limit = f" for {fault.duration:g} s" if fault.duration is not None else ""
    return f"{share}: {what}{limit}"


def _power(n: int) -> str:
    """10^12 for 1000000000000; other numbers as they are."""
    exponent = len(str(n)) - 1
    return f"10^{exponent}" if n > 1 and n == 10**exponent else f"{n:,}"


def _describe_page(fault: Fault) -> str:
    what = {
        "empty_page": "served without products, the same total_count",
        "short_page": "served with a third of its products, the same total_count",
        "duplicate_sku": "its first product served with the sku of the catalog's first product",
        "stale_page": "served the second time as it was the first (a stale cached copy)",
    }[fault.kind]
    page = f"offset page {fault.page}" if fault.page is not None else "a middle offset page"
    times = "" if fault.times == 1 else f" ({fault.times} answers)" if fault.times else " (always)"
    return f"{page} of a full scan{times}: {what}"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of a source, as the daemon ran it (a crash has no `SyncResult`)."""

    source: str
    status: str
    error: str | None
    result: SyncResult | None

    def label(self, with_source: bool) -> str:
        """`failed (timeout)`, or `sick: failed (HTTP 500)` when several sources run."""
        text = self.status if self.error is None else f"{self.status} ({error_class(self.error)})"
        return f"{self.source}: {text}" if with_source else text


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What one scenario did and measured; one row of the reliability report."""

    scenario: str
    faults: list[str]
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
    tombstoned: int = 0
    longest_run: float = 0.0
    credentials: str = "none leaked"

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the results file."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Counters:
    token_requests: int
    faults_injected: int

    @classmethod
    def of(cls, emulators: list[Emulator]) -> _Counters:
        stats = [e.adobe.stats for e in emulators]
        return cls(sum(s.token_requests for s in stats), sum(s.faults_injected for s in stats))


@dataclass
class FaultLab:
    """Builds one scenario's world on an `AsyncExitStack`; closed when the test ends.

    `logs` holds every structlog event of the test, stamped by `LabClock.stamp`.
    """

    tmp_path: Path
    stack: AsyncExitStack
    clock: LabClock
    sink: list[ScenarioResult]
    logs: list[Event]
    emulators: list[Emulator] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    checks: list[DataCheck] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    direct: list[RequestStats] = field(default_factory=list)
    bursts: list[str] = field(default_factory=list)
    runtime: Runtime | None = None
    daemon: Daemon | None = None
    opened_at: datetime | None = None
    liveness: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)
    elsewhere: list[Elsewhere] = field(default_factory=list)
    log_output: io.StringIO = field(default_factory=io.StringIO)
    metrics: str = ""
    unmet: list[str] = field(default_factory=list)
    _baseline_runs: int = 0
    _baseline: _Counters | None = None
    _scheduling: bool = False
    _world: AsyncExitStack | None = None

    def __post_init__(self) -> None:
        # Log events and requests logged so far (the stamp's `served`).
        self.clock.activity = lambda: (
            len(self.logs),
            sum(len(e.adobe.stats.log) for e in self.emulators),
        )

    # -- the world ------------------------------------------------------------------------------

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
        """A source on `emu` (the first emulator): 10 products a page, 4 workers, hourly."""
        fields: dict[str, Any] = {"page_size": 10, "max_concurrency": 4, "schedule": LAB_SCHEDULE}
        fields.update(overrides)
        return adobe_source(emu or self.emu, name, **fields)

    def _sources(self) -> list[tuple[str, Emulator]]:
        assert self.runtime is not None, "open() the lab first"
        by_url = {e.url: e for e in self.emulators}
        return [
            (s.name, by_url[str(s.base_url).rstrip("/")]) for s in self.runtime.settings.sources
        ]

    def settings(
        self, *sources: AdobeCommerceSourceSettings, http: HttpSettings = LAB_HTTP
    ) -> Settings:
        """The lab's settings: its database, `sources` (one source on the first emulator)."""
        return Settings(
            store=StoreSettings(path=self.db),
            sources=sources or (self.source(),),
            http=http,
            shutdown_grace=2.0,
        )

    async def open(
        self,
        *sources: AdobeCommerceSourceSettings,
        http: HttpSettings = LAB_HTTP,
        settings: Settings | None = None,
    ) -> Runtime:
        """The runtime and a daemon on it; returns after the daemon's start-up runs, each one a
        good first sync (checked: every table equals its catalog).

        From here on the daemon logs as `syncd run --log-level debug --log-format json` does
        (through the settings' redactor, third-party loggers included) into `log_output`, one of
        the sinks `leaks` searches; `logs` still receives every event, unrendered."""
        settings = settings or self.settings(*sources, http=http)
        self._log_like_syncd_run(settings)
        await self._start(settings)
        for run in self.runs:
            assert run.status == "succeeded", f"the good first sync failed: {run}"
        for name, emu in self._sources():
            check = self.check(name, emu)
            assert check.exact, f"the good first sync of {name!r}: {check}"
        self._baseline_runs = len(self.runs)
        self._baseline = _Counters.of(self.emulators)
        return self.runtime  # type: ignore[return-value]  # set by _start

    async def _start(self, settings: Settings, restart: bool = False) -> None:
        """A runtime and a daemon on `settings`; returns once the daemon's start-up runs ended
        (recorded in `runs`)."""
        world = await self.stack.enter_async_context(AsyncExitStack())
        self._world = world
        self.runtime = await world.enter_async_context(
            Runtime(settings, clock=self.clock, rng=random.Random(5))
        )
        self.opened_at = self.clock.now()
        self.clock.parked.clear()
        crashed = len(self.logs)
        self.daemon = await world.enter_async_context(Daemon(self.runtime, handle_signals=False))
        daemon = self.daemon
        count = len(settings.sources)
        if restart:
            # The start-up runs are due at the lab's time, which APScheduler (on real time) has
            # not reached once the lab's clock moved on: they are due now, as they were at open.
            for source in settings.sources:
                daemon._scheduler.reschedule_in(source.name, datetime.now(UTC))
        await until(lambda: len(daemon.results) + len(self.crashes(crashed)) >= count)
        self.runs.extend(RunRecord(r.source, r.status, r.error, r) for r in daemon.results)
        self.runs.extend(
            RunRecord(e["source"], "crashed", e["error"], None) for e in self.crashes(crashed)
        )
        # Else the monitor's staleness loop (renamed?) would run the lab's clock forward.
        await until(lambda: "staleness-check" in self.clock.parked)

    async def restart(self, why: str) -> list[RunRecord]:
        """Stop the daemon and its runtime, and start them again on the same settings (what an
        operator does after a fault only a restart clears); returns the new start-up runs."""
        assert self.runtime is not None and self._world is not None, "open() the lab first"
        settings = self.runtime.settings
        await self._world.aclose()
        self.note(f"then syncd restarted ({why})")
        before = len(self.runs)
        await self._start(settings, restart=True)
        return self.runs[before:]

    def _log_like_syncd_run(self, settings: Settings) -> None:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        configure_logging("debug", "json", self.log_output, redactor=settings.redactor)

        def tee(_: Any, method: str, event: Event) -> Event:
            self.logs.append({**event, "log_level": method})  # as capture_logs records it
            return event

        def restore() -> None:
            root.handlers[:] = handlers
            root.setLevel(level)

        self.stack.callback(restore)
        processors = structlog.get_config()["processors"]
        structlog.configure(processors=[self.clock.stamp, tee, *processors])

    def crashes(self, since: int = 0) -> list[Event]:
        """The runs the daemon logged as crashed (the store refused them: no `SyncResult`)."""
        return self.events("sync.crashed", since)

    # -- runs -----------------------------------------------------------------------------------

    async def run(self, name: str = "shop", kind: RunKind | None = None) -> RunRecord:
        """Run source `name` now as its jobs do (`Daemon.trigger`: its breaker sees the outcome)."""
        daemon = self.daemon
        assert daemon is not None, "open() the lab first"
        results, seen = len(daemon.results), len(self.logs)
        # The start-up job lets go of its source a loop iteration after its result is in.
        for _ in range(100):
            await daemon.trigger(name, kind)
            if len(daemon.results) > results:
                result = daemon.results[-1]
                record = RunRecord(result.source, result.status, result.error, result)
                break
            new = self.logs[seen:]
            crash = [e for e in new if e["event"] == "sync.crashed" and e["source"] == name]
            if crash:
                record = RunRecord(name, "crashed", crash[-1]["error"], None)
                break
            skipped = [e for e in new if e["event"] == "sync.skipped" and e["source"] == name]
            assert skipped and skipped[-1]["reason"] == "already_running", (
                f"the daemon did not run {name!r}: {skipped}"
            )
            await asyncio.sleep(0)
        else:
            raise AssertionError(f"{name!r} stayed busy")
        self.runs.append(record)
        return record

    async def sync(self, name: str = "shop", kind: RunKind | None = None) -> SyncResult:
        """`run`, for a run that must end with a result (of any status), not a crash."""
        record = await self.run(name, kind)
        assert record.result is not None, f"the run of {name!r} crashed: {record.error}"
        return record.result

    def events(self, event: str, since: int = 0) -> list[Event]:
        """The logged events named `event` (from index `since` of `logs`)."""
        return [e for e in self.logs[since:] if e["event"] == event]

    # -- faults, recorded for the report ----------------------------------------------------------

    def _emu(self, emu: Emulator | None) -> Emulator:
        return emu or self.emu

    def _note(self, text: str, emu: Emulator | None) -> None:
        if len(self.emulators) > 1:
            name = next(n for n, e in self._sources() if e is self._emu(emu))
            text = f"{name}: {text}"
        self.faults.append(text)

    def inject(self, *faults: Fault, emu: Emulator | None = None) -> None:
        """Arm `faults` on the emulator (the first one)."""
        for fault in faults:
            self._emu(emu).adobe.faults.add(fault)
            self._note(describe(fault), emu)

    def heal(self, emu: Emulator | None = None) -> None:
        """Disarm every fault of the emulator: the API is well again."""
        self._emu(emu).adobe.faults.clear()

    def revoke_tokens(self, when: str = "", emu: Emulator | None = None) -> None:
        """Every token issued so far stops working (the API answers 401)."""
        self._emu(emu).adobe.revoke_tokens()
        self._note(f"every token revoked{when}", emu)

    def disable_client(self, disabled: bool = True, emu: Emulator | None = None) -> None:
        """The token endpoint refuses (or accepts again) the client: `invalid_client`."""
        self._emu(emu).adobe.set_client_disabled(disabled)
        if disabled:
            self._note("the client disabled at the token endpoint (invalid_client)", emu)

    def note(self, text: str) -> None:
        """A fault the emulator cannot inject (the database, the clock), as the test made it."""
        self.faults.append(text)

    def change_catalog(
        self, emu: Emulator | None = None, every: int = 20, add: int = 1
    ) -> set[str]:
        """A little churn before the fault, so that the faulted run has something to write:
        every `every`-th product repriced, `add` products added. Returns the skus changed.

        The churn is dated `CHURN_AGE` seconds before the faulted run, as a store's edits between
        two scheduled runs are: a product created within a full scan's overlap window would make
        it verify the catalog, which is not what these scenarios are about."""
        catalog = self._emu(emu).adobe.catalog
        changed = set(list(catalog.skus())[::every])
        for sku in changed:
            catalog.update(sku, price=round(random.Random(sku).uniform(1, 99), 2))
        changed.update(catalog.insert(name=f"Added {n}", price=5.0) for n in range(add))
        self.clock.advance(CHURN_AGE)
        return changed

    def delete_products(self, *positions: int, emu: Emulator | None = None) -> set[str]:
        """Delete the products at `positions` (0-based, in id order) from the catalog: what a
        full scan must tombstone, and nothing else. Returns their skus."""
        catalog = self._emu(emu).adobe.catalog
        skus = list(catalog.skus())
        gone = {skus[p] for p in positions}
        for sku in gone:
            catalog.delete(sku)
        return gone

    # -- the data -------------------------------------------------------------------------------

    def stored(self, name: str = "shop") -> dict[str, dict[str, Any]]:
        """sku -> payload of the live products of `name`."""
        return stored_products(self.db, name)

    def _rows(self, name: str, catalog: dict[str, Any]) -> tuple[int, int]:
        """Rows stored twice (by sku or id), and products tombstoned that the catalog still has."""
        with sqlite3.connect(self.db) as conn:
            rows, skus, ids, distinct_ids = conn.execute(
                "SELECT count(*), count(DISTINCT sku), count(id), count(DISTINCT id) "
                "FROM products WHERE source = ?",
                (name,),
            ).fetchone()
            tombstoned = conn.execute(
                "SELECT sku FROM products WHERE source = ? AND deleted_at IS NOT NULL", (name,)
            ).fetchall()
        return (rows - skus) + (ids - distinct_ids), sum(sku in catalog for (sku,) in tombstoned)

    def check(self, name: str = "shop", emu: Emulator | None = None) -> DataCheck:
        """The stored products of `name` against the catalog of `emu` (the first one)."""
        catalog = self._emu(emu).adobe.catalog.snapshot()
        stored = self.stored(name)
        duplicated, tombstoned = self._rows(name, catalog)
        return DataCheck(
            lost=sum(1 for sku, item in catalog.items() if stored.get(sku) != item),
            duplicated=duplicated,
            unexpected=len(stored.keys() - catalog.keys()),
            tombstoned=tombstoned,
        )

    def verify(self, name: str = "shop", emu: Emulator | None = None) -> DataCheck:
        """`check` after a run that succeeded; counted in the report."""
        check = self.check(name, emu)
        self.checks.append(check)
        return check

    def unharmed(
        self, before: dict[str, dict[str, Any]], name: str = "shop", emu: Emulator | None = None
    ) -> DataCheck:
        """After a failed run, against what was stored `before` it; counted in the report.

        Lost: a product stored before that is gone, tombstoned, or neither as it was nor as the
        catalog has it now (a page the run committed). Unexpected: any other row that is not the
        catalog's. Tombstoned: a product the catalog still has. Nothing is stored twice.
        """
        catalog = self._emu(emu).adobe.catalog.snapshot()
        after = self.stored(name)
        duplicated, tombstoned = self._rows(name, catalog)
        check = DataCheck(
            lost=sum(
                1 for sku, was in before.items() if after.get(sku) not in (was, catalog.get(sku))
            ),
            duplicated=duplicated,
            unexpected=sum(
                1 for sku in after.keys() - before.keys() if after[sku] != catalog.get(sku)
            ),
            tombstoned=tombstoned,
        )
        self.checks.append(check)
        return check

    def secrets(self) -> dict[str, str]:
        """Every credential of the scenario by what it is: each emulator's client secret and
        every access token its IMS issued."""
        found: dict[str, str] = {}
        for n, emu in enumerate(self.emulators):
            found[f"client secret {n}"] = emu.adobe.config.client_secret
            found.update({f"access token {n}.{i}": t for i, t in enumerate(emu.adobe.ims.tokens)})
        return found

    def texts(self) -> str:
        """Every text value of every table but the persisted tokens themselves."""
        found: list[str] = []
        with sqlite3.connect(self.db) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                for column in [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]:
                    if table == "tokens" and column in ("access_token", "refresh_token"):
                        continue
                    query = f"SELECT {column} FROM {table} WHERE typeof({column}) = 'text'"
                    found.extend(row[0] for row in conn.execute(query))
        return "\n".join(found)

    def watch(self, elsewhere: Elsewhere) -> Elsewhere:
        """Count what reaches `elsewhere` (another origin a fault points at) as leaked."""
        self.elsewhere.append(elsewhere)
        return elsewhere

    def leaks(self) -> list[str]:
        """Where a credential went that it should not: `what in sink` (empty when nowhere).

        The sinks: the log output (JSON at debug level, third-party loggers included), every
        text column of the database, `/metrics` (read by `conclude`), every run's error, and any
        other origin a fault pointed at (any request it received counts)."""
        sinks = {
            "log output": self.log_output.getvalue(),
            "database": self.texts() if self.db.exists() else "",
            "/metrics": self.metrics,
            "run errors": "\n".join(r.error or "" for r in self.runs),
        }
        leaked = [
            f"{kind} in {sink}"
            for kind, secret in self.secrets().items()
            for sink, text in sinks.items()
            if secret in text or secret[:24] in text or secret[-24:] in text
        ]
        leaked.extend(
            f"{len(other.received)} requests to the other origin"
            for other in self.elsewhere
            if other.received
        )
        return leaked

    def integrity(self) -> str:
        """SQLite's own verdict on the file ("ok" when sound)."""
        with sqlite3.connect(self.db) as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def expect(self, holds: object, what: object) -> None:
        """A scenario's own check, made before its row is recorded: one that does not hold is
        kept (and named in the row's outcome), and `finish` fails on it, so the row can show it."""
        if not holds:
            self.unmet.append(str(what).splitlines()[0][:120] if str(what) else "a check")

    # -- the daemon, and the end of a scenario ------------------------------------------------------

    def assert_alive(self) -> None:
        """The daemon answers its liveness probe with its scheduler running, and every source has
        a next run later than the start-up run (its job is still there, re-armed)."""
        problems = self.liveness_problems()
        assert not problems, problems

    def liveness_problems(self) -> list[str]:
        """`assert_alive`'s checks, as what failed (empty when none); keeps the probe's detail."""
        daemon = self.daemon
        assert daemon is not None and self.opened_at is not None, "open() the lab first"
        probe = daemon.monitor.liveness()
        self.liveness = probe.detail
        problems = [] if probe.ok and probe.detail["scheduler"] == "running" else [str(probe)]
        for name, _ in self._sources():
            next_run = daemon.next_run(name)
            if next_run is None or next_run <= self.opened_at:
                problems.append(f"{name!r} is no longer scheduled after the start: {next_run}")
        self._scheduling = not problems
        return problems

    async def conclude(self, scenario: str) -> ScenarioResult:
        """End the scenario and record its row, asserting nothing: the daemon's liveness, one
        more run of each source, every table against its catalog. A bad outcome is recorded as
        such (and `finish` then fails on it), so the report can show it."""
        self.liveness_problems()
        for name, emu in self._sources():
            await self.run(name)
            self.verify(name, emu)
        assert self.daemon is not None
        body, _ = await self.daemon.monitor.metrics()
        self.metrics = body.decode()
        return self._record(scenario)

    async def finish(self, scenario: str) -> ScenarioResult:
        """`conclude`, then assert: the daemon is alive and schedules every source, the run after
        the scenario succeeded, and every check the scenario made found the data intact."""
        return self.assert_recorded(await self.conclude(scenario))

    def assert_recorded(self, result: ScenarioResult) -> ScenarioResult:
        """`finish`'s assertions on a row `conclude` recorded: the daemon is alive and schedules
        every source, the run after the scenario succeeded, every check found the data intact,
        and no credential leaked."""
        assert self._scheduling, (result.outcome, self.liveness_problems())
        for run in self.runs[-len(self._sources()) :]:
            assert run.status == "succeeded", f"the run after the scenario: {run.error}"
        bad = [c for c in self.checks if not c.exact]
        assert not bad, (result.outcome, bad)
        assert result.credentials == "none leaked", (result.outcome, result.credentials)
        assert not self.unmet, (result.outcome, self.unmet)
        return result

    def _record(self, scenario: str) -> ScenarioResult:
        assert scenario in SCENARIO_IDS, f"{scenario!r} is not listed in scenarios.py"
        assert self._baseline is not None and self.liveness is not None
        several = len(self._sources()) > 1
        after = self.runs[self._baseline_runs :]
        totals = [r.result.totals for r in after if r.result is not None]
        counters = _Counters.of(self.emulators)
        runs = [r.label(several) for r in self.runs]
        runs[self._baseline_runs : self._baseline_runs] = self.bursts
        failed = sum(r.status != "succeeded" for r in after)
        intact = all(c.exact for c in self.checks)
        last = {r.source: r.status for r in after}
        if failed and all(status == "succeeded" for status in last.values()):
            outcome = f"{failed} run{'s' if failed > 1 else ''} failed, then recovered"
        elif failed:
            outcome = f"{failed} run{'s' if failed > 1 else ''} failed, THE LAST ONE TOO"
        else:
            outcome = "every run succeeded"
        outcome += "; data intact" if intact else "; DATA NOT INTACT"
        if self.unmet:
            outcome += f"; {len(self.unmet)} CHECKS FAILED ({self.unmet[0]})"
        leaked = self.leaks()
        if leaked:
            outcome += "; CREDENTIAL LEAKED"
        if self._scheduling:
            outcome += "; daemon alive and scheduling"
        else:
            outcome += "; DAEMON NOT ALIVE OR NOT SCHEDULING"
        result = ScenarioResult(
            scenario=scenario,
            faults=list(self.faults),
            runs=runs,
            requests=sum(t.requests for t in totals) + sum(s.requests for s in self.direct),
            retries=sum(t.retries for t in totals) + sum(s.retries for s in self.direct),
            rate_limited=sum(t.rate_limited for t in totals)
            + sum(s.rate_limited for s in self.direct),
            token_requests=counters.token_requests - self._baseline.token_requests,
            faults_injected=counters.faults_injected - self._baseline.faults_injected,
            lost=sum(c.lost for c in self.checks),
            duplicated=max(c.duplicated for c in self.checks),
            outcome=outcome,
            wall_seconds=round(time.perf_counter() - self.started, 2),
            tombstoned=max(c.tombstoned for c in self.checks),
            longest_run=max((r.result.duration for r in after if r.result), default=0.0),
            credentials="; ".join(leaked) if leaked else "none leaked",
        )
        self.sink.append(result)
        return result

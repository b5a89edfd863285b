"""The daemon as operators see it: systemd notifications, metrics, staleness events and probes.

The daemon calls `after_run()` when a scheduled run ends; everything else here runs on its own
(the watchdog pings, the periodic staleness check) or on request (the health listener's probes).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from syncd.clock import Clock
from syncd.config import Settings
from syncd.errors import SyncdError
from syncd.feed import webhook_backlog
from syncd.logging import get_logger
from syncd.ops.health import Check
from syncd.ops.metrics import CONTENT_TYPE, Metrics, StoreSnapshot
from syncd.ops.notify import Notifier
from syncd.ops.staleness import SourceHealth, assess, limits
from syncd.store import RunRecord, Store
from syncd.store.base import ChangeFeed
from syncd.sync import SyncResult

log = get_logger(__name__)

STALE_REMINDER = 3600.0
"""While a source stays stale, `source.stale` is logged again this often (seconds)."""


class Monitor:
    """Turns the daemon's runs and the store's state into notifications, metrics and log events.

    `results` is the daemon's list of finished runs; each one is counted exactly once.
    `scheduling` says whether the scheduler is running; `overdue` which jobs it has failed to
    fire for more than their period (job id -> seconds late).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        results: list[SyncResult],
        scheduling: Callable[[], bool],
        notifier: Notifier | None = None,
        overdue: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._results = results
        self._scheduling = scheduling
        self._overdue = overdue or dict
        self.notifier = notifier or Notifier()
        self.exported = Metrics()
        self._observed = 0
        self._limits: dict[str, float] = {}
        self._stale_logged: dict[str, float] = {}
        # The latest health of each source: refreshed whole by the periodic check, and for the
        # sources that just ran after each run (re-reading every source after every run cost
        # two store queries per source per run: quadratic in the number of sources).
        self._health: dict[str, SourceHealth] = {}
        self._started: datetime | None = None
        self._started_mono = 0.0
        self._stopping = False
        self.checks = 0
        """Staleness checks completed (so that a test can wait for the next one)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        if self._started is not None:
            raise RuntimeError("Monitor cannot be reopened; create a new Monitor instead")
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.notifier)
            self._started = self._clock.now()
            self._started_mono = self._clock.monotonic()
            self._limits = limits(self._settings.sources, self._started)
            self.exported.declare(self._limits)
            stack.push_async_callback(self._cancel_tasks)
            self._spawn(self._check_periodically(), "staleness-check")
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def limits(self) -> dict[str, float]:
        """Staleness limit (seconds) of every enabled source."""
        return dict(self._limits)

    # -- lifecycle notifications ------------------------------------------------------------------

    async def ready(self) -> None:
        """The store is open and the schedule loaded: tell systemd, and start the watchdog pings."""
        self.notifier.ready(await self._status_line())
        self._spawn(self.notifier.keep_alive(self._clock), "watchdog")

    def stopping(self, running: int) -> None:
        """Shutdown has begun (called before the drain)."""
        self._stopping = True
        self.notifier.stopping(f"stopping: draining {running} run(s)" if running else "stopping")

    async def after_run(self) -> None:
        """A scheduled run ended: count it, re-check the staleness of the sources that ran,
        update the systemd STATUS line."""
        ran = self.observe()
        if self._stopping:
            return  # systemd already shows "stopping"; the drain owns the STATUS line now
        try:
            await self.check_staleness(only=ran if self._health else None)
            self.notifier.status(await self._status_line())
        except SyncdError as exc:
            log.warning("daemon.monitor_failed", error=str(exc))

    # -- metrics ----------------------------------------------------------------------------------

    def observe(self) -> list[str]:
        """Count every run finished since the last call; the sources they were of."""
        sources: list[str] = []
        while self._observed < len(self._results):
            result = self._results[self._observed]
            sources.append(result.source)
            self.exported.observe(result)
            # The histogram holds them now; a daemon running for months must not keep them all.
            self._results[self._observed] = dataclasses.replace(result, latencies=())
            self._observed += 1
        return sources

    async def metrics(self) -> tuple[bytes, str]:
        """Scrape: count new runs, read the store's state, render."""
        self.observe()
        health = await self._assess()
        snapshot = StoreSnapshot(
            health=tuple(health),
            token_events=await self._store.token_event_counts(),
            products={name: await self._store.count_products(name) for name in self._limits},
            webhook_backlog=await self._webhook_backlog(),
        )
        self.exported.update(snapshot)
        return self.exported.render(), CONTENT_TYPE

    async def _webhook_backlog(self) -> dict[tuple[str, str], int]:
        hooks = self._settings.webhooks
        if not hooks or not isinstance(self._store, ChangeFeed):
            return {}
        return await webhook_backlog(self._store, hooks)

    # -- staleness --------------------------------------------------------------------------------

    async def _assess(self) -> list[SourceHealth]:
        return await assess(self._store, self._limits, self._clock.now(), self._started)

    async def check_staleness(self, only: list[str] | None = None) -> list[SourceHealth]:
        """Assess every source (or those in `only`); log `source.stale` when one goes (and
        stays) stale, `source.fresh` when it recovers."""
        if only is None:
            report = await self._assess()
        else:
            wanted = {name: self._limits[name] for name in only if name in self._limits}
            report = await assess(self._store, wanted, self._clock.now(), self._started)
        self._health.update((h.source, h) for h in report)
        now = self._clock.monotonic()
        for h in report:
            logged = self._stale_logged.get(h.source)
            if h.stale and (logged is None or now - logged >= STALE_REMINDER):
                self._stale_logged[h.source] = now
                log.warning(
                    "source.stale",
                    source=h.source,
                    last_success_at=_iso(h.last_success_at),
                    age_s=None if h.age_s is None else round(h.age_s),
                    limit_s=round(h.limit_s),
                    action="see 'syncd runs " + h.source + " --status failed'",
                )
            elif not h.stale and logged is not None:
                del self._stale_logged[h.source]
                log.info("source.fresh", source=h.source, last_success_at=_iso(h.last_success_at))
        self.checks += 1
        return report

    async def _check_periodically(self) -> None:
        # Often enough to notice a limit being crossed within a quarter of it, at most once a minute.
        period = max(1.0, min([60.0, *(limit / 4 for limit in self._limits.values())]))
        while True:
            await self._clock.sleep(period)
            try:
                await self.check_staleness()
            except SyncdError as exc:
                log.warning("daemon.monitor_failed", error=str(exc))

    # -- probes -----------------------------------------------------------------------------------

    def liveness(self) -> Check:
        """Alive while the loop answers and the scheduler runs without a job overdue by more than
        its period (or the daemon is draining)."""
        scheduling = self._scheduling()
        overdue = self._overdue() if scheduling and not self._stopping else {}
        detail = {
            "alive": (scheduling and not overdue) or self._stopping,
            "scheduler": "overdue" if overdue else "running" if scheduling else "stopped",
            "overdue_s": overdue,
            "stopping": self._stopping,
            "uptime_s": round(self._clock.monotonic() - self._started_mono, 3),
        }
        return Check(bool(detail["alive"]), detail)

    async def readiness(self) -> Check:
        """Ready when the store answers and no source needs re-auth or is stale."""
        if self._stopping:
            return Check(False, {"ready": False, "reason": "stopping"})
        try:
            await self._store.check_file()  # a deleted or replaced file still answers every read
            report = await self._assess()
        except SyncdError as exc:
            return Check(False, {"ready": False, "store": f"error: {exc}", "sources": []})
        sources = [_describe(h) for h in report]
        ready = all(h.ready for h in report)
        return Check(ready, {"ready": ready, "store": "ok", "sources": sources})

    async def _status_line(self) -> str:
        runs = {r.source: r for r in await self._store.last_runs()}
        health = self._health
        if any(name not in health for name in self._limits):
            health = {h.source: h for h in await self._assess()}
        return "; ".join(_status_part(name, runs.get(name), health[name]) for name in self._limits)


def _describe(h: SourceHealth) -> dict[str, Any]:
    reasons = []
    if h.needs_reauth:
        reasons.append(f"needs re-authorisation: {h.reauth_reason}; run 'syncd auth {h.source}'")
    if h.stale:
        reasons.append(f"stale: no successful run for longer than {round(h.limit_s)}s")
    return {
        "source": h.source,
        "ready": h.ready,
        "needs_reauth": h.needs_reauth,
        "stale": h.stale,
        "last_success_at": _iso(h.last_success_at),
        "age_s": None if h.age_s is None else round(h.age_s, 3),
        "stale_limit_s": h.limit_s,
        "reasons": reasons,
    }


def _status_part(name: str, run: RunRecord | None, health: SourceHealth) -> str:
    words = [name, "never run"] if run is None else [name, run.status, run.finished_at or ""]
    if health.needs_reauth:
        words.append("NEEDS AUTH")
    if health.stale:
        words.append("STALE")
    return " ".join(w for w in words if w)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")

"""The daemon: schedules a Runtime's sources (one process) or claims them by lease (replicas on
PostgreSQL); owns health, notifications, signals and shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
from collections import Counter, deque
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from syncd.breaker import BreakerPolicy, SourceBreaker
from syncd.config import SourceSettings
from syncd.errors import LeaseLostError, SourceBusyError, StoreError, SyncdError
from syncd.feed import WebhookDispatcher
from syncd.fleet import first_run, next_run
from syncd.logging import get_logger
from syncd.ops.health import HealthServer
from syncd.ops.monitor import Monitor
from syncd.ops.notify import Notifier
from syncd.runtime import Runtime
from syncd.schedule import IntervalSchedule
from syncd.scheduler import SourceScheduler
from syncd.store.base import ChangeFeed, RunKind
from syncd.store.factory import store_name
from syncd.store.postgres_leases import Lease, PostgresLeases
from syncd.sync import SyncResult

log = get_logger(__name__)

HISTORY_PRUNE_INTERVAL = 3600.0
"""Seconds between two prunes of run history and token events (`[store] history_retention`):
each removes at most what an hour added, in chunks, instead of a few rows after every run."""

RECENT_RESULTS = 100
"""Finished runs a daemon keeps in `Daemon.results` (the oldest goes first): the metrics and the
store hold the whole history."""
# Seconds between prunes of every source's change feed (a source no longer run keeps its entries
# until then); after each run only the source that ran is pruned.
FEED_SWEEP_INTERVAL = 3600.0


# Interval sources' first runs are this far apart at most: a thousand sources due at the same
# instant ran all at once, every cycle (their due times stay aligned), so their runs started
# late behind each other and the process's memory rose to N runs' pages at once.
FIRST_RUN_SPACING = 0.05


def _first_delay(index: int, among: int, interval: float) -> float:
    """Seconds after start-up of the first run of the `index`-th of `among` interval sources:
    spread evenly, at most `FIRST_RUN_SPACING` apart, all within the first interval."""
    if among <= 1:
        return 0.0
    return index * min(FIRST_RUN_SPACING, interval / among)


class Daemon:
    """Runs every enabled source on its schedule until `stop()` or SIGTERM/SIGINT, then drains."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        handle_signals: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._handle_signals = handle_signals
        self._scheduler = SourceScheduler(clock=runtime.clock)
        self._stopping = asyncio.Event()
        self._active: dict[str, asyncio.Task[SyncResult | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._signals: list[signal.Signals] = []
        self._stack = AsyncExitStack()
        self.results: deque[SyncResult] = deque(maxlen=RECENT_RESULTS)
        """The last RECENT_RESULTS finished runs, newest last, without their latencies."""
        self._finished = Counter[bool]()  # runs over the daemon's life, by success
        self.monitor = Monitor(
            self._settings,
            runtime.store,
            runtime.clock,
            lambda: self._scheduler.running,
            notifier,
            overdue=self._scheduler.overdue,
        )
        self.health: HealthServer | None = None
        self._breakers = {
            s.name: SourceBreaker(BreakerPolicy.from_settings(s)) for s in self._settings.sources
        }
        self._jobs: dict[str, list[str]] = {}
        self._job_tasks: set[asyncio.Task[object]] = set()
        self.webhooks: WebhookDispatcher | None = None
        self._leased: dict[str, asyncio.Task[None]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._history_pruned_at: float | None = None  # monotonic time of the last history prune
        self._feed_swept_at: float | None = None  # monotonic; the last prune of every source

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.monitor)
            if self._settings.webhooks:
                self.webhooks = await stack.enter_async_context(
                    WebhookDispatcher(
                        self._settings.webhooks, self._runtime.store, self._runtime.clock
                    )
                )
            if self._settings.health.enabled:
                self.health = await stack.enter_async_context(
                    HealthServer(self._settings.health, self.monitor)
                )
            interval_sources = sum(
                1
                for s in self._settings.sources
                if s.enabled and isinstance(s.parsed_schedule, IntervalSchedule)
            )
            spread = 0
            leases = self._runtime.leases
            for source in self._settings.sources:
                if not source.enabled:
                    log.info("daemon.source_disabled", source=source.name)
                    continue
                if leases is None and self._schedule(source, spread, interval_sources):
                    spread += 1
            # On PostgreSQL the schedule lives in the lease rows and this (job-less) scheduler
            # only answers for liveness: the poll loop claims what is due.
            self._scheduler.start()
            stack.callback(self._scheduler.shutdown)
            if leases is not None:
                await self._join(leases)
                stack.push_async_callback(self._leave, leases)
            if self._handle_signals:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    self._signals.append(sig)
                stack.callback(self._remove_signal_handlers)
            log.info(
                "daemon.started",
                sources=[s.name for s in self._settings.sources if s.enabled],
                store=store_name(self._settings.store),
            )
            # READY only now: the store is open and every job is scheduled.
            await self.monitor.ready()
            self._stack = stack.pop_all()
        return self

    # -- PostgreSQL: sources claimed by lease from the shared schedule ------------------------------

    async def _join(self, leases: PostgresLeases) -> None:
        """Register this replica, give each enabled source a lease row, start the poll loop."""
        runtime = self._runtime
        await leases.heartbeat(runtime.owner, socket.gethostname(), os.getpid(), runtime.started_at)
        now = await leases.now()
        firsts: dict[str, tuple[datetime, datetime | None]] = {}
        enabled = [s for s in self._settings.sources if s.enabled]
        among = sum(isinstance(s.parsed_schedule, IntervalSchedule) for s in enabled)
        index = 0
        for source in enabled:
            full, schedule = source.parsed_full_schedule, source.parsed_schedule
            first = first_run(schedule, now)
            if isinstance(schedule, IntervalSchedule):
                # Spread as on one process (`_first_delay`): sources due at one instant would stay
                # aligned on one grid, and every round would start as a herd.
                first += timedelta(seconds=_first_delay(index, among, schedule.seconds))
                index += 1
            firsts[source.name] = (first, None if full is None else next_run(full, now, now))
        await leases.ensure(firsts)
        self._poller = asyncio.create_task(self._poll(leases, sorted(firsts)), name="lease-poll")
        log.info(
            "fleet.joined",
            replica=runtime.owner,
            sources=len(firsts),
            slots=self._settings.replica.max_concurrent_runs,
            lease_s=leases.lease_seconds,
        )

    async def _leave(self, leases: PostgresLeases) -> None:
        try:
            await leases.leave(self._runtime.owner)
        except StoreError as exc:
            log.warning("fleet.leave_failed", error=str(exc))

    async def _poll(self, leases: PostgresLeases, names: list[str]) -> None:
        """Every `poll_interval`: heartbeat, then claim due sources into the free slots."""
        runtime, replica = self._runtime, self._settings.replica
        while not self._stopping.is_set():
            try:
                await leases.heartbeat(
                    runtime.owner, socket.gethostname(), os.getpid(), runtime.started_at
                )
                # A replica stopped inside a write holds its lease row locked: end its session
                # once idle for half a lease, so the row can be claimed when the lease expires.
                ended = await leases.end_stalled_sessions(leases.lease_seconds / 2)
                if ended:
                    log.warning("fleet.stalled_sessions_ended", sessions=ended)
                free = replica.max_concurrent_runs - len(self._leased)
                for lease in await leases.claim_due(names, runtime.owner, free):
                    if self._stopping.is_set():
                        await leases.release(lease, None)
                        continue
                    log.info(
                        "lease.claimed",
                        source=lease.source,
                        epoch=lease.epoch,
                        taken_from=lease.previous,
                    )
                    task = asyncio.create_task(self._leased_job(lease), name=f"job-{lease.source}")
                    self._leased[lease.source] = task
                    self._job_tasks.add(task)
                    task.add_done_callback(self._job_tasks.discard)
            except StoreError as exc:
                log.error("fleet.poll_failed", error=str(exc))
            except Exception as exc:
                # A bug must not silently end this replica's share of the work: log, poll again.
                log.error("fleet.poll_failed", error=f"internal error: {type(exc).__name__}: {exc}")
            sleep = asyncio.ensure_future(runtime.clock.sleep(replica.poll_interval))
            stop = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({sleep, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                stop.cancel()

    async def _leased_job(self, lease: Lease) -> None:
        """Run a claimed source, then release its lease with the next run time."""
        name, leases = lease.source, self._runtime.leases
        assert leases is not None
        kind: RunKind | None = "full" if lease.full_due else None
        ok: bool | None = None
        backoff: datetime | None = None
        lost = False
        try:
            task = asyncio.create_task(self._leased_run(lease, kind), name=f"sync-{name}")
            self._active[name] = task
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
                result = None  # the drain cancelled it; the engine recorded it `cancelled`
            except LeaseLostError as exc:
                lost = True
                log.error("lease.given_up", source=name, epoch=lease.epoch, error=str(exc))
                result = None
            except SyncdError as exc:
                log.error("sync.crashed", source=name, error=str(exc))
                backoff = self._after_run(name, ok=False, error=str(exc))
                ok = False
                result = None
            if result is not None:
                backoff = self._after_run(name, ok=result.ok, error=result.error)
                ok = result.ok
            if not lost:
                await self._release(leases, lease, ok, backoff)
        except StoreError as exc:
            log.error("lease.release_failed", source=name, error=str(exc))
        finally:
            self._active.pop(name, None)
            self._leased.pop(name, None)
            try:
                await self._feed_after_run(name)
                await self.prune_history()
                await self.monitor.after_run()
            except StoreError as exc:
                log.error("fleet.after_run_failed", source=name, error=str(exc))

    async def _leased_run(self, lease: Lease, kind: RunKind | None) -> SyncResult | None:
        state = await self._runtime.store.source_state(lease.source)
        if state.needs_reauth:
            log.warning(
                "sync.skipped",
                source=lease.source,
                reason="needs_reauth",
                detail=state.reauth_reason,
                action=f"run 'syncd auth {lease.source}'",
            )
            return None
        result = await self._runtime.sync_leased(lease, kind)
        self.results.append(result)
        return result

    async def _release(
        self, leases: PostgresLeases, lease: Lease, ok: bool | None, backoff: datetime | None
    ) -> None:
        """Store the source's next run times (later while its breaker backs it off; at once if
        the run was stopped by a drain, so another replica resumes it) and free the lease."""
        source = self._settings.source(lease.source)
        now = await leases.now()
        if self._stopping.is_set() and ok is None:
            await leases.release(lease, now)
            return
        due = lease.due_at or now
        upcoming = next_run(source.parsed_schedule, due, now)
        if backoff is not None:
            wait = (backoff - self._runtime.clock.now()).total_seconds()
            upcoming = max(upcoming, now + timedelta(seconds=max(0.0, wait)))
        full = source.parsed_full_schedule
        upcoming_full = None
        if full is not None and lease.full_due:
            upcoming_full = next_run(full, lease.full_due_at or now, now)
        if await leases.release(lease, upcoming, upcoming_full):
            log.info("lease.released", source=lease.source, next_run=upcoming.isoformat())
        else:
            log.error("lease.given_up", source=lease.source, epoch=lease.epoch,
                        error="the lease was no longer this replica's when the run ended")  # fmt: skip

    def _schedule(self, source: SourceSettings, index: int = 0, among: int = 1) -> bool:
        """Add the source's jobs; True if its schedule is an interval (its first run is now,
        or for the `index`-th of `among` interval sources a little later, see `_first_delay`)."""
        name = source.name

        async def job() -> None:
            await self._job(name, None)

        async def full_job() -> None:
            await self._job(name, "full")

        # Interval schedules sync once right away; cron schedules wait for their first slot.
        schedule = source.parsed_schedule
        interval = isinstance(schedule, IntervalSchedule)
        first = None
        if isinstance(schedule, IntervalSchedule):
            first = self._runtime.clock.now() + timedelta(
                seconds=_first_delay(index, among, schedule.seconds)
            )
        self._scheduler.add(name, schedule, job, first)
        self._jobs[name] = [name]
        full = source.parsed_full_schedule
        if full is not None:
            self._scheduler.add(f"{name}:full", full, full_job, None)
            self._jobs[name].append(f"{name}:full")
        log.info(
            "daemon.scheduled", source=name, schedule=str(schedule), full_schedule=str(full or "-")
        )
        return interval

    async def _job(self, name: str, kind: RunKind | None) -> None:
        """The body of a scheduled job; tracked, so that the drain lets it end on its own."""
        task = asyncio.current_task()
        if task is not None:
            self._job_tasks.add(task)
        try:
            await self.trigger(name, kind)
        finally:
            try:
                await self._feed_after_run(name)
                await self.prune_history()
                await self.monitor.after_run()
            finally:
                if task is not None:
                    self._job_tasks.discard(task)

    async def _feed_after_run(self, source: str) -> None:
        """Push what the run appended to the feed, and prune what retention no longer keeps: the
        source that ran, and every source at most once per FEED_SWEEP_INTERVAL (each source's
        prune costs a few queries: pruning all of them after every run was quadratic)."""
        if self.webhooks is not None:
            self.webhooks.wake()
        feed: ChangeFeed = self._runtime.store
        retention = self._settings.changes.retention
        clock = self._runtime.clock
        before = clock.now() - timedelta(seconds=retention)
        swept = self._feed_swept_at
        sweep = swept is None or clock.monotonic() - swept >= FEED_SWEEP_INTERVAL
        if sweep:
            self._feed_swept_at = clock.monotonic()
        try:
            removed = await feed.prune_changes(before, None if sweep else [source])
        except StoreError as exc:
            log.error("changes.prune_failed", error=str(exc))
            return
        if removed:
            log.info("changes.pruned", entries=removed, retention_s=retention)

    async def prune_history(self) -> None:
        """Remove the runs and token events older than `[store] history_retention`, at most
        once per HISTORY_PRUNE_INTERVAL (the first after the daemon's first run)."""
        clock = self._runtime.clock
        last = self._history_pruned_at
        if self._stopping.is_set():
            return  # draining: a backlog of chunks would only delay the stop
        if last is not None and clock.monotonic() - last < HISTORY_PRUNE_INTERVAL:
            return
        self._history_pruned_at = clock.monotonic()
        retention = self._settings.store.history_retention
        before = clock.now() - timedelta(seconds=retention)
        store = self._runtime.store
        try:
            runs = await store.prune_runs(before)
            events = await store.prune_token_events(before)
        except StoreError as exc:
            log.error("history.prune_failed", error=str(exc))
            return
        if runs or events:
            log.info("history.pruned", runs=runs, token_events=events, retention_s=retention)

    async def trigger(self, name: str, kind: RunKind | None = None) -> None:
        """Run source `name` now as its scheduled jobs do: skipped while a run of it is going,
        its outcome fed to the source's breaker."""
        if self._stopping.is_set():
            return
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            # The scheduled and the periodic full job of one source must never overlap.
            log.info("sync.skipped", source=name, reason="already_running", kind=kind or "auto")
            return
        async with lock:
            task = asyncio.create_task(self.run_once(name, kind), name=f"sync-{name}")
            self._active[name] = task
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # this caller was cancelled; the run itself goes on
                # The drain cancelled the run past the grace; the engine recorded it `cancelled`.
                return
            except SourceBusyError as exc:
                log.warning("sync.skipped", source=name, reason="busy", detail=str(exc))
            except SyncdError as exc:
                # A store failure escapes the engine: one clear line, and it counts as a failed run.
                log.error("sync.crashed", source=name, error=str(exc))
                self._after_run(name, ok=False, error=str(exc))
            else:
                if result is not None:
                    self._after_run(name, ok=result.ok, error=result.error)
            finally:
                if task.done():
                    self._active.pop(name, None)

    def _after_run(self, name: str, *, ok: bool, error: str | None) -> datetime | None:
        """Feed the source's breaker; back its jobs off while it keeps failing (returns until
        when, in the runtime's clock)."""
        breaker = self._breakers[name]
        if ok:
            recovered = breaker.succeeded()
            if recovered is not None:
                log.info("source.recovered", source=name, after_failures=recovered.failures)
            return None
        backoff = breaker.failed(self._runtime.clock.now())
        if backoff is None or self._stopping.is_set():
            return None
        for job_id in self._jobs.get(name, []):
            natural = self._scheduler.next_run(job_id)
            # Only ever later: a backoff shorter than the schedule leaves the schedule alone.
            if natural is not None and natural < backoff.until:
                self._scheduler.reschedule_in(job_id, backoff.until)
        log.warning(
            "source.backoff",
            source=name,
            failures=backoff.failures,
            delay_s=backoff.delay,
            next_run=(self.next_run(name) or backoff.until).isoformat(),
            error=error,
        )
        return backoff.until

    def running(self, name: str) -> bool:
        """Whether a run of source `name` is going (its job still holds the source)."""
        lock = self._locks.get(name)
        return lock is not None and lock.locked()

    def next_run(self, job: str) -> datetime | None:
        """When a job runs next: a source's name, or `<source>:full` (None if not scheduled)."""
        return self._scheduler.next_run(job)

    async def run_once(self, name: str, kind: RunKind | None = None) -> SyncResult | None:
        """Sync source `name` now, unless it waits for an operator (`needs_reauth`)."""
        state = await self._runtime.store.source_state(name)
        if state.needs_reauth:
            log.warning(
                "sync.skipped",
                source=name,
                reason="needs_reauth",
                detail=state.reauth_reason,
                action=f"run 'syncd auth {name}'",
            )
            return None
        result = await self._runtime.sync(name, kind)
        self.monitor.record(result)
        self._finished[result.ok] += 1
        # The histogram holds the latencies now; a daemon running for months keeps none of them.
        self.results.append(dataclasses.replace(result, latencies=()))
        return result

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("daemon.signal", signal=sig.name)
        self.stop()

    def stop(self) -> None:
        """Ask the daemon to stop scheduling and drain."""
        self._stopping.set()

    async def wait(self) -> None:
        """Block until `stop()` or a signal."""
        await self._stopping.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self.monitor.stopping(sum(not t.done() for t in self._active.values()))
        self._remove_signal_handlers()
        # Stop firing jobs but leave the running ones alone: shutting APScheduler down now would
        # cancel them, skip their bookkeeping and log each one as a job error with a traceback.
        self._scheduler.pause()
        if self._poller is not None:
            await asyncio.gather(self._poller, return_exceptions=True)
        running = [t for t in self._active.values() if not t.done()]
        grace = self._settings.shutdown_grace
        pending: set[asyncio.Task[SyncResult | None]] = set()
        if running:
            log.info("daemon.draining", runs=len(running), grace_s=grace)
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel("the daemon was stopped during the run")
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        # Their runs are over: the jobs only feed the breaker and the monitor before returning.
        if self._job_tasks:
            await asyncio.wait(set(self._job_tasks))
        self._scheduler.shutdown()
        log.info(
            "daemon.stopped",
            runs=self._finished.total(),
            failed=self._finished[False],
            cancelled=len(pending),
        )
        # The listener and the watchdog outlive the drain: systemd must not kill a slow drain.
        await self._stack.aclose()

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        while self._signals:
            loop.remove_signal_handler(self._signals.pop())

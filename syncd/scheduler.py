"""A typed wrapper over APScheduler 3's `AsyncIOScheduler`: one job per source, never overlapping,
and a schedule that survives the wall clock stepping back.

APScheduler 3 keeps next run times in wall-clock time and sleeps with the event loop's monotonic
timer. When the wall clock steps back (NTP correcting a clock that ran ahead, an operator, a VM
restored from a snapshot), the timer fires on time but finds the job not yet due, and waits the
step again: a 10-minute step costs a 10-minute stall, a day's step a day. So at each wake-up the
scheduler compares the wall clock with the monotonic one, and moves every next run back by a
backward step: each job keeps the monotonic deadline it had. A forward step needs nothing: the
jobs are late and APScheduler runs them (coalesced) at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncd.apscheduler3 import AsyncIOScheduler
from syncd.clock import Clock, SystemClock
from syncd.logging import get_logger
from syncd.schedule import Schedule, to_trigger

log = get_logger(__name__)

JobFunc = Callable[[], Awaitable[None]]

STEP_TOLERANCE = 2.0
"""Seconds the wall clock may drift from the monotonic one before it counts as a step (NTP
slews by at most 0.5 ms a second; a step is a jump)."""


@dataclass(frozen=True, slots=True)
class _Deadline:
    """A job's next run as last seen: its wall time and the monotonic time it falls due."""

    next_run: datetime
    monotonic: float


class _GuardedScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler 3 is untyped
    """APScheduler with a hook before and after each pass over its jobs."""

    def __init__(self, before: Callable[[], object], after: Callable[[], object], **options: Any):
        super().__init__(**options)
        self._before = before
        self._after = after

    def _process_jobs(self) -> Any:
        self._before()
        wait = super()._process_jobs()
        self._after()
        return wait


class SourceScheduler:
    """Schedules coroutine jobs; `max_instances=1` and `coalesce=True` are set here and only here.

    `clock` is what wall-clock steps and overdue jobs are judged by (APScheduler itself reads the
    system clock: keep them the same outside tests)."""

    def __init__(self, misfire_grace: float = 300.0, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._scheduler: Any = _GuardedScheduler(self.realign, self._observe, timezone="UTC")
        self._misfire_grace = misfire_grace
        self._stopped = False
        self._offset: float | None = None
        self._deadlines: dict[str, _Deadline] = {}

    def add(
        self, job_id: str, schedule: Schedule, func: JobFunc, first_run: datetime | None
    ) -> None:
        """Run `func` on `schedule` (first at `first_run` if given); a run still going skips the next."""
        # APScheduler 3 adds a job *paused* when next_run_time is None: leave it out instead,
        # so that the trigger computes the first run.
        first = {} if first_run is None else {"next_run_time": first_run}
        self._scheduler.add_job(
            func,
            trigger=to_trigger(schedule),
            id=job_id,
            name=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(self._misfire_grace),
            replace_existing=True,
            **first,
        )
        self._observe()

    def reschedule_in(self, job_id: str, when: datetime) -> None:
        """Move the next run of `job_id` (used to back a failing source off)."""
        self._scheduler.modify_job(job_id, next_run_time=when)
        self._observe()

    def next_run(self, job_id: str) -> datetime | None:
        """When `job_id` runs next."""
        job = self._scheduler.get_job(job_id)
        return None if job is None else job.next_run_time

    @property
    def running(self) -> bool:
        """True between `start()` and `shutdown()`."""
        return bool(self._scheduler.running) and not self._stopped

    def start(self) -> None:
        """Start firing jobs on the running event loop."""
        self._offset = self._wall_offset()
        self._scheduler.start()

    def pause(self) -> None:
        """Stop firing jobs, leaving running ones alone (`shutdown()` would cancel them)."""
        if self._scheduler.running and not self._stopped:
            self._scheduler.pause()

    def resume(self) -> None:
        """Fire jobs again after `pause()`: those that fell due meanwhile run now (coalesced)."""
        if self._scheduler.running and not self._stopped:
            self._scheduler.resume()

    def shutdown(self) -> None:
        """Stop firing jobs (idempotent); running jobs are the caller's to drain."""
        # APScheduler's asyncio flavour stops on the next loop iteration, so `running` stays true
        # until then: a second call in between must not ask again.
        if self._scheduler.running and not self._stopped:
            self._stopped = True
            self._scheduler.shutdown(wait=False)

    # -- the wall clock against the monotonic one ---------------------------------------------------

    def _wall_offset(self) -> float:
        return self._clock.now().timestamp() - self._clock.monotonic()

    def realign(self) -> float:
        """Move every next run back by the wall clock's backward step since the last call (so each
        keeps its monotonic deadline) and log `scheduler.clock_stepped`; return the step in
        seconds (negative: back), 0.0 if the clocks still agree. Runs before each of
        APScheduler's passes over its jobs."""
        offset = self._wall_offset()
        if self._offset is None:
            self._offset = offset
            return 0.0
        step = offset - self._offset
        if abs(step) <= STEP_TOLERANCE:
            return 0.0
        self._offset = offset
        moved = []
        if step < 0:
            for job in self._scheduler.get_jobs():
                next_run = getattr(job, "next_run_time", None)
                if next_run is not None:
                    job.modify(next_run_time=next_run + timedelta(seconds=step))
                    moved.append(job.id)
            if moved:
                self._scheduler.wakeup()
        log.warning(
            "scheduler.clock_stepped",
            step_s=round(step, 3),
            jobs_moved=sorted(moved),
            consequence=(
                "next runs moved back by the step: each keeps its time to run"
                if step < 0
                else "late jobs run now (coalesced)"
            ),
        )
        self._observe()
        return step

    def _observe(self) -> None:
        """Note when each job falls due in monotonic time, as of its current next run."""
        now, mono = self._clock.now(), self._clock.monotonic()
        current: dict[str, _Deadline] = {}
        for job in self._scheduler.get_jobs():
            next_run = getattr(job, "next_run_time", None)  # unset on a job added before start
            if next_run is None:
                continue
            known = self._deadlines.get(job.id)
            if known is not None and known.next_run == next_run:
                current[job.id] = known
            else:
                current[job.id] = _Deadline(next_run, mono + (next_run - now).total_seconds())
        self._deadlines = current

    def overdue(self) -> dict[str, float]:
        """Jobs whose next run is overdue by more than their period (in seconds of monotonic time,
        so a wall-clock step does not count): the scheduler has stopped firing them."""
        self.realign()
        self._observe()
        mono = self._clock.monotonic()
        late: dict[str, float] = {}
        for job in self._scheduler.get_jobs():
            deadline = self._deadlines.get(job.id)
            if deadline is None:
                continue
            lateness = mono - deadline.monotonic
            if lateness > _period(job.trigger, deadline.next_run):
                late[job.id] = round(lateness, 3)
        return late


def _period(trigger: Any, fire_time: datetime) -> float:
    """Seconds from `fire_time` to the trigger's following fire time (inf if there is none)."""
    following = trigger.get_next_fire_time(fire_time, fire_time + timedelta(seconds=1))
    return float("inf") if following is None else (following - fire_time).total_seconds()

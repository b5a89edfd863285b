"""A typed wrapper over APScheduler 3's `AsyncIOScheduler`: one job per source, never overlapping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from syncd.schedule import Schedule, to_trigger

JobFunc = Callable[[], Awaitable[None]]


class SourceScheduler:
    """Schedules coroutine jobs; `max_instances=1` and `coalesce=True` are set here and only here."""

    def __init__(self, misfire_grace: float = 300.0) -> None:
        self._scheduler: Any = AsyncIOScheduler(timezone="UTC")
        self._misfire_grace = misfire_grace
        self._stopped = False

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

    def reschedule_in(self, job_id: str, when: datetime) -> None:
        """Move the next run of `job_id` (used to back a failing source off)."""
        self._scheduler.modify_job(job_id, next_run_time=when)

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
        self._scheduler.start()

    def pause(self) -> None:
        """Stop firing jobs, leaving running ones alone (`shutdown()` would cancel them)."""
        if self._scheduler.running and not self._stopped:
            self._scheduler.pause()

    def shutdown(self) -> None:
        """Stop firing jobs (idempotent); running jobs are the caller's to drain."""
        # APScheduler's asyncio flavour stops on the next loop iteration, so `running` stays true
        # until then: a second call in between must not ask again.
        if self._scheduler.running and not self._stopped:
            self._stopped = True
            self._scheduler.shutdown(wait=False)

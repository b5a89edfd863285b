"""A source's pace outlives its owner: the adaptive rate and a pending `Retry-After` pause are saved
in the store and loaded by whichever replica (or process) sends the source's next requests.

`RateMemory` is a throttle that paces nothing itself. Placed first in a source's throttles, it
loads the persisted pace before the first request (and again after `reload_after` idle seconds,
when the source may have run elsewhere meanwhile): the adaptive rate resumes where it was,
requests wait out a pause another owner was told to keep, and an AmeriCommerce source's call
window that has not ended yet keeps the calls already spent in it. It sees every answer, so it
knows when the pace changes (a 429, a recovery step, a call counted in the window), and saves it
at most every `save_interval` seconds: the first change at once, later ones with the next request
after the interval (no timer of its own), and what is still unsaved when the client pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import datetime, timedelta
from typing import Literal, Protocol

from syncd.clock import Clock
from syncd.errors import StoreError
from syncd.http.call_limit import CallLimitThrottle
from syncd.http.response import Response
from syncd.http.retry import RetryPolicy, parse_retry_after
from syncd.http.throttle import AdaptiveThrottle
from syncd.logging import get_logger
from syncd.store import RateSearch, SourceRate

log = get_logger(__name__)

# A source's adaptive rate and where the search for its limit stands.
_Pace = tuple[float | None, RateSearch | None]


class RateStore(Protocol):
    """The part of the `Store` that keeps sources' paces."""

    async def source_rate(self, source: str) -> SourceRate | None:
        """The persisted pace of `source` (None: never saved)."""
        ...

    async def save_source_rate(self, rate: SourceRate) -> None:
        """Persist (replace) the pace of `rate.source`."""
        ...


class RateMemory:
    """Loads and saves one source's pace; a `Throttle` that only waits out a persisted pause."""

    def __init__(
        self,
        source: str,
        store: RateStore,
        clock: Clock,
        policy: RetryPolicy,
        adaptive: AdaptiveThrottle | None,
        *,
        window: CallLimitThrottle | None = None,
        save_interval: float = 2.0,
        reload_after: float = 60.0,
    ) -> None:
        self.source = source
        self._store = store
        self._clock = clock
        self._policy = policy
        self._adaptive = adaptive
        self._window = window
        self._saved_window: tuple[object, ...] | None = None  # `_window_key` of the last save
        self._save_interval = save_interval
        self._reload_after = reload_after
        self._last_used: float | None = None  # monotonic; None: never loaded
        self._resume_at = 0.0  # monotonic end of a pause loaded from the store
        self._paused_until: datetime | None = None  # wall-clock end of the latest pause
        self._saved: _Pace = (None, None)  # what the store holds
        self._dirty = False  # a change not saved yet
        self._saved_at: float | None = None  # monotonic time of the last save begun
        self._saving: asyncio.Task[None] | None = None
        self._loading = asyncio.Lock()

    async def acquire(self) -> None:
        """Load the persisted pace if due, note a recovered rate, wait out a persisted pause."""
        if self._load_due():
            async with self._loading:
                if self._load_due():
                    await self._load()
        self._last_used = self._clock.monotonic()
        if self._stale():
            self._changed()  # a recovery step, a call in the window (or the release) since then
        while (delay := self._resume_at - self._clock.monotonic()) > 0:
            await self._clock.sleep(delay)

    def observe(self, response: Response | None) -> None:
        """A 429 changes the pace: remember its pause, save soon."""
        if response is None or response.status != 429:
            return
        now = self._clock.now()
        header = response.headers.get("Retry-After")
        pause = self._policy.rate_limit_pause(parse_retry_after(header, now))
        until = now + timedelta(seconds=pause)
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until
        self._changed()

    def release(self) -> None:
        """Nothing was admitted here that needs giving back."""

    async def aclose(self) -> None:
        """Save a pending change now, and how long a settled search has held (the store must
        still be open)."""
        if self._saving is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._saving
        if self._stale() or self._held():
            await self._save()

    def _held(self) -> float:
        adaptive = self._adaptive
        return 0.0 if adaptive is None else adaptive.rate.held_for(self._clock.monotonic())

    def _stale(self) -> bool:
        """Something the store does not hold yet."""
        return (
            self._dirty
            or self._current() != self._saved
            or self._window_key() != self._saved_window
        )

    def _window_key(self) -> tuple[object, ...] | None:
        window = self._window
        if window is None:
            return None
        return (window.limit, window.own, window.window_end, window.phase_width)

    def _load_due(self) -> bool:
        if self._last_used is None:
            return True
        idle = self._clock.monotonic() - self._last_used
        # Not while a change of ours waits to be saved: the store holds an older pace.
        return not self._dirty and self._saving is None and idle >= self._reload_after

    def _current(self) -> _Pace:
        if self._adaptive is None:
            return (None, None)
        return (self._adaptive.rate.rate, self._adaptive.rate.search)

    async def _load(self) -> None:
        try:
            saved = await self._store.source_rate(self.source)
        except StoreError as exc:
            self._failed("load", exc)
            saved = None
        self._last_used = self._clock.monotonic()
        if saved is None:
            return
        if saved.window is not None and self._window is not None:
            self._window.resume(saved.window)
            self._saved_window = self._window_key()
        now = self._clock.now()
        self._saved = (saved.rate, saved.found)
        paused_for = 0.0
        if saved.paused_until is not None and saved.paused_until > now:
            self._paused_until = saved.paused_until
            paused_for = (saved.paused_until - now).total_seconds()
            self._resume_at = max(self._resume_at, self._clock.monotonic() + paused_for)
        if self._adaptive is not None:
            # Recovery counts from the end of the pause, as after a 429 of this process's own.
            mono = self._clock.monotonic()
            self._adaptive.rate.resume(saved.rate, mono, max(mono, self._resume_at), saved.found)
        if saved.rate is not None or paused_for:
            log.info(
                "http.rate_restored",
                source=self.source,
                rate=None if saved.rate is None else round(saved.rate, 3),
                found_rate=None if saved.found is None else round(saved.found.lower, 3),
                paused_for=round(paused_for, 3),
                saved_at=saved.updated_at.isoformat(),
            )

    def _changed(self) -> None:
        self._dirty = True
        due = self._saved_at is None or (
            self._clock.monotonic() - self._saved_at >= self._save_interval
        )
        if due and (self._saving is None or self._saving.done()):
            self._saving = asyncio.create_task(self._save())

    async def _save(self) -> None:
        self._saved_at = self._clock.monotonic()
        self._dirty = False
        now = self._clock.now()
        pace = self._current()
        rate, found = pace
        if found is not None:
            found = dataclasses.replace(found, held=self._held())
        paused = self._paused_until if self._paused_until and self._paused_until > now else None
        window = None if self._window is None else self._window.state()
        key = self._window_key()  # after `state()`, which moves the window on with the clock
        try:
            await self._store.save_source_rate(
                SourceRate(self.source, rate, paused, now, window, found)
            )
        except StoreError as exc:
            self._dirty = True
            self._failed("save", exc)
            return
        self._saved = pace
        self._saved_window = key

    def _failed(self, action: Literal["load", "save"], exc: StoreError) -> None:
        log.warning(
            "http.rate_state_failed",
            source=self.source,
            action=action,
            error=str(exc),
            consequence="the source is paced from what this process knows, which may be faster "
            "than the rate its previous owner was allowed",
        )

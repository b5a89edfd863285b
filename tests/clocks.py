"""The tests' one virtual clock: time that moves only by a deterministic rule, never by itself.

`VirtualClock` implements `syncd.clock.Clock`. How its time moves is chosen by `advance`:

- ``"instant"``: `sleep(s)` moves the time by `s` at once (one task sleeping is the whole world).
- ``"manual"``: `sleep(s)` blocks until the test calls `advance` past its deadline.
- ``"auto"``: `sleep(s)` blocks until the time reaches its deadline; the time jumps to the earliest
  pending deadline only when the event loop is idle: no ready callback, no timer due, and no
  socket with I/O ready (peeked with a zero timeout). That is exact for code whose peers live on
  the same loop (the emulator on loopback): a request on the wire is a readable socket, so the
  time stands still until it is served, as real time would. It is not for peers in another
  process (PostgreSQL), whose answers take real time to arrive.
- ``"loop"``: the event loop itself runs on this clock (`run(main)`): the loop's `time()` is the
  clock's monotonic time, so `asyncio.sleep`, timeouts and aiolimiter read it too, and `sleep(s)`
  is `asyncio.sleep(s)`. When nothing is ready, the time jumps to the next timer: a discrete-event
  simulation, for code that does no real I/O.

Whatever the rule, there is one "now": `now()` and `monotonic()` move together (but for
`step_wall`), and APScheduler can be made to read it too (`scheduler_on`).
`FakeClock` and `ManualClock` add no behaviour: they name the first two rules as a default.
"""

from __future__ import annotations

import asyncio
import heapq
import selectors
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, TypeVar

import pytest

T = TypeVar("T")

Advance = Literal["instant", "manual", "auto", "loop"]


class VirtualClock:
    """A `syncd.clock.Clock` on virtual time; see the module docstring for when it advances."""

    def __init__(
        self,
        start: datetime | None = None,
        advance: Advance = "instant",
        parked: frozenset[str] = frozenset(),
    ) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0
        self.mode: Advance = advance
        # Tasks (by name) whose sleeps never end: periodic loops that would otherwise keep an
        # "auto" clock jumping forever; they are cancelled by their owner.
        self.parked_tasks = parked
        self.parked: list[str] = []
        self.slept: list[float] = []
        self.waits = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._driver: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds` and wake every sleep now due."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
        self._wake()

    def step_wall(self, seconds: float) -> None:
        """Move the wall clock only (negative: back), as `date -s` or an NTP step does; the
        monotonic clock does not notice."""
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        task = asyncio.current_task()
        if task is not None and task.get_name() in self.parked_tasks:
            self.parked.append(task.get_name())
            await asyncio.Event().wait()
        if self.mode == "loop":
            await asyncio.sleep(max(0.0, seconds))
            return
        if self.mode == "instant":
            self.advance(max(0.0, seconds))
            await asyncio.sleep(0)
            return
        if seconds <= 0 and self.mode == "auto":
            await asyncio.sleep(0)
            return
        self.waits += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.monotonic() + seconds, self.waits, future))
        if self.mode == "auto" and (self._driver is None or self._driver.done()):
            self._driver = asyncio.create_task(self._drive(), name="virtual-clock")
        await future

    def next_wake(self) -> float | None:
        """The monotonic deadline of the earliest pending `sleep` (None: nobody sleeps)."""
        return self._sleepers[0][0] if self._pending() else None

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run `main` to completion on a fresh event loop whose time is this clock ("loop" rule)."""
        if self.mode != "loop":
            raise RuntimeError("VirtualClock.run needs advance='loop'")
        loop = _ClockLoop(self)
        try:
            return loop.run_until_complete(main)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def close(self) -> None:
        """Stop the auto-advance driver (the test is over)."""
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending():
            await asyncio.sleep(0)
            if not self._pending() or not loop_is_idle(loop):
                continue
            deadline = self._sleepers[0][0]
            self.advance(max(0.0, deadline - self.monotonic()))

    def _pending(self) -> bool:
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleeps
            heapq.heappop(self._sleepers)
        return bool(self._sleepers)

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self.monotonic():
            future = heapq.heappop(self._sleepers)[2]
            if not future.done():
                future.set_result(None)


def loop_is_idle(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether nothing on `loop` could run now: no callback ready, no timer due, no I/O ready.

    Reads the selector loop's internals (CPython's `BaseSelectorEventLoop`): asyncio has no public
    way to ask. An epoll/poll peek with a zero timeout is level-triggered, so the loop's own next
    select still sees every event.
    """
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    selector = getattr(loop, "_selector", None)
    if ready is None or scheduled is None or selector is None:
        raise RuntimeError("VirtualClock(advance='auto') needs asyncio's selector event loop")
    if ready:
        return False
    if scheduled and scheduled[0].when() <= loop.time():
        return False
    return not selector.select(0)


class _IdleSelector(selectors.DefaultSelector):
    """A selector with nothing to watch: a wait for `timeout` is the clock moving by it.

    Each pass of the loop costs at least a microsecond: a timer due "now" plus a rounding error
    (aiolimiter computes its wake-ups by float arithmetic) would otherwise never come due.
    """

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("virtual time: every task waits and no timer is due (deadlock)")
        self._clock.advance(max(timeout, 1e-6))
        return []


class _ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is a `VirtualClock`'s monotonic time; no real I/O."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        super().__init__(_IdleSelector(clock))

    def time(self) -> float:
        return self._clock.monotonic()


def scheduler_on(clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make APScheduler 3 read `clock.now()` where it reads the system clock (when a job is due,
    where an interval starts, how late a run is), so next runs are exact instants of the test."""

    class ClockDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> ClockDatetime:
            now = clock.now() if tz is None else clock.now().astimezone(tz)
            return cls.fromtimestamp(now.timestamp(), now.tzinfo)

    for module in ("schedulers.base", "executors.base", "triggers.interval"):
        monkeypatch.setattr(f"apscheduler.{module}.datetime", ClockDatetime)


class FakeClock(VirtualClock):
    """The virtual clock whose `sleep` advances it instantly (the default rule)."""


class ManualClock(FakeClock):
    """The virtual clock whose `sleep` blocks until the test calls `advance` past the deadline."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(start, advance="manual")

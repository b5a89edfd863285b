"""An event loop on virtual time: when nothing is ready, its clock jumps to the next timer.

Everything that reads the loop's clock (asyncio.sleep, timeouts, aiolimiter) then runs as a
discrete-event simulation: minutes of pacing take milliseconds, and timings are exact and repeatable.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class _IdleSelector(selectors.DefaultSelector):
    """A selector with nothing to watch: a wait for `timeout` is the clock moving by it.

    Each pass of the loop costs at least a microsecond: a timer due "now" plus a rounding error
    (aiolimiter computes its wake-ups by float arithmetic) would otherwise never come due.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("virtual time: every task waits and no timer is due (deadlock)")
        self.now += max(timeout, 1e-6)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A loop whose `time()` is virtual; only for code that does no real I/O."""

    def __init__(self) -> None:
        self._idle = _IdleSelector()
        super().__init__(self._idle)

    def time(self) -> float:
        return self._idle.now


class LoopClock:
    """The `Clock` protocol on the running loop's time (virtual under `VirtualTimeLoop`)."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh `VirtualTimeLoop`."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

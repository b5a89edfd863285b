"""The lab's virtual clock: waits end in deadline order; the time stands still while the loop is busy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import get_args

from syncd.emulator import Fault
from syncd.emulator.config import FaultKind
from tests.faults.lab import LabClock, describe


async def test_time_jumps_from_deadline_to_deadline_only_once_the_loop_is_idle() -> None:
    """Sleepers wake in deadline order at their deadline; while a task keeps the loop busy (a
    worker in the middle of something) the time stands still, however long the others sleep."""
    clock = LabClock(datetime(2026, 1, 1, tzinfo=UTC))
    logged: list[int] = []
    start = clock.monotonic()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic() - start))

    async def busy() -> float:
        seen = clock.monotonic()
        for n in range(200):  # a worker in the middle of something, never waiting
            logged.append(n)
            await asyncio.sleep(0)
            assert clock.monotonic() == seen
        return seen

    try:
        tasks = [asyncio.create_task(sleeper("late", 2.5)), asyncio.create_task(sleeper("soon", 1))]
        assert await busy() == start
        await asyncio.gather(*tasks)
    finally:
        await clock.close()
    assert woke == [("soon", 1.0), ("late", 2.5)]
    assert clock.monotonic() - start == 2.5


def test_every_fault_kind_is_described_in_words() -> None:
    """Each kind the emulator knows reads as what it does in a report row (not its bare name)."""
    for kind in get_args(FaultKind):
        extra: dict[str, object] = {"body": "{}"} if kind == "json" else {}
        if kind == "redirect":
            extra = {"status": 302, "location": "http://127.0.0.1:9"}
        text = describe(Fault(kind, **extra))  # type: ignore[arg-type]
        assert text.startswith("1 API answer: ") or "of a full scan" in text, text
        assert text.split(": ", 1)[-1] != kind.replace("_", " "), f"{kind!r} has no words"
    shown = describe(Fault("status", status=429, retry_after="²", after=3))
    assert shown == "1 API answer after the first 3: HTTP 429, Retry-After: ²"
    assert describe(Fault("huge_total", total=10**9, times=None)).endswith("total_count 10^9")

"""The fault suite's fixtures: a lab per test, and the session's results file when asked for.

`SYNCD_FAULT_RESULTS=path pytest tests/faults` writes every scenario's figures to `path` (JSON)
for `python -m tests.faults.report`; without it nothing is written, so CI leaves the tree clean.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.clock import FakeClock, SystemClock
from tests.faults.lab import FaultLab, ScenarioResult

RESULTS_ENV = "SYNCD_FAULT_RESULTS"


@pytest.fixture(scope="session")
def fault_results() -> Iterator[list[ScenarioResult]]:
    """Every scenario's figures, written out at the end of the session if `RESULTS_ENV` is set."""
    results: list[ScenarioResult] = []
    yield results
    target = os.environ.get(RESULTS_ENV)
    if target:
        Path(target).write_text(
            json.dumps([r.to_json() for r in results], indent=2) + "\n", encoding="utf-8"
        )


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake clock at the real time: APScheduler (real time) fires runs planned on it."""
    return FakeClock(datetime.now(UTC))


@pytest.fixture
async def lab(
    tmp_path: Path, fake_clock: FakeClock, fault_results: list[ScenarioResult]
) -> AsyncIterator[FaultLab]:
    """A lab on the fake clock, shared by the emulator and syncd."""
    async with AsyncExitStack() as stack:
        yield FaultLab(tmp_path, stack, fake_clock, fault_results)


@pytest.fixture
async def real_lab(tmp_path: Path, fault_results: list[ScenarioResult]) -> AsyncIterator[FaultLab]:
    """A lab on the system clock, for what APScheduler must time for real (backoffs of runs)."""
    async with AsyncExitStack() as stack:
        yield FaultLab(tmp_path, stack, SystemClock(), fault_results)

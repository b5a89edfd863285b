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
from structlog.testing import capture_logs

from tests.faults.lab import FaultLab, LabClock, ScenarioResult

RESULTS_ENV = "SYNCD_FAULT_RESULTS"
AFTER_THE_SCENARIOS = "test_this_session_reproduces_the_committed_rows"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The comparison of this session's rows with the committed report runs after every scenario."""
    last = [item for item in items if item.name == AFTER_THE_SCENARIOS]
    items[:] = [item for item in items if item.name != AFTER_THE_SCENARIOS] + last


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
def lab_clock() -> LabClock:
    """Virtual time from the real time on: APScheduler (real time) fires the start-up runs at once."""
    return LabClock(datetime.now(UTC))


@pytest.fixture
async def lab(
    tmp_path: Path, lab_clock: LabClock, fault_results: list[ScenarioResult]
) -> AsyncIterator[FaultLab]:
    """A lab on the virtual clock, shared by the emulator and syncd; every log event captured."""
    with capture_logs(processors=[lab_clock.stamp]) as logs:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(lab_clock.close)  # last: the daemon may still sleep
            yield FaultLab(tmp_path, stack, lab_clock, fault_results, logs)

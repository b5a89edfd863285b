"""Shared fixtures: a fake clock, a real SQLite store in tmp_path, log capture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.clock import FakeClock
from syncd.store import SqliteStore


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when a test (or a sleep) moves it."""
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in a temporary directory."""
    async with SqliteStore(tmp_path / "syncd.db") as opened:
        yield opened

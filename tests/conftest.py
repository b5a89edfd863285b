"""Shared fixtures: a fake clock, a real SQLite store in tmp_path, log capture."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core

from syncd.store import SqliteStore
from tests.clocks import FakeClock
from tests.postgres_support import empty_tables, throwaway_database
from tests.scans import Backend


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A CLI test configures logging onto a captured stream that pytest closes afterwards."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when a test (or a sleep) moves it."""
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database created for this test session (skips when there is no server)."""
    with throwaway_database() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    empty_tables(postgres_database)
    return postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def scan_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A store for full scans through the runtime (tests/scans.py): SQLite in tmp_path, then
    PostgreSQL (the session's database, emptied)."""
    if request.param == "sqlite":
        return Backend.sqlite(tmp_path / "syncd.db")
    return Backend.postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in a temporary directory."""
    async with SqliteStore(tmp_path / "syncd.db") as opened:
        yield opened


class _FinishedUpload:
    """Stands in for the request writer aiohttp 3.14 expects; a mocked request has sent nothing."""

    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's required `stream_writer` (aioresponses#289)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedUpload())
        super().__init__(*args, **kwargs)


@pytest.fixture
def http_mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """aioresponses, made to work with aiohttp >= 3.14 for the duration of one test."""
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as mock:
        yield mock


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until it blocks."""
    for _ in range(rounds):
        await asyncio.sleep(0)

"""`syncd sync` in a real process: SIGTERM ends it as Ctrl-C does, with the run recorded."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from tests.support import query, until
from tests.test_process import start_syncd, stored_count, write_config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def slow_emu() -> AsyncIterator[Emulator]:
    """2,000 products served slowly (10 ms a request) so a run lasts long enough to interrupt."""
    async with Emulator(
        EmulatorConfig(adobe=AdobeConfig(products=2000, latency=0.01), seed=5)
    ) as emu:
        yield emu


SIGNALS = {
    signal.SIGTERM: (143, "syncd sync was stopped by SIGTERM during the run",
                     "syncd: terminated (SIGTERM); the run is recorded as cancelled"),
    signal.SIGINT: (130, "the run was stopped before it finished", "syncd: interrupted"),
}  # fmt: skip


@pytest.mark.parametrize("sig", list(SIGNALS), ids=lambda s: s.name)
async def test_a_signal_cancels_a_manual_sync_records_it_and_exits_128_plus_it(
    tmp_path: Path, slow_emu: Emulator, sig: signal.Signals
) -> None:
    """SIGTERM as SIGINT (Ctrl-C) mid-run: the run is `cancelled` (not left `running`) with a
    reason that speaks of no daemon, the final `sync.finished` line is logged, one line says so,
    exit 143 (130)."""
    code, reason, last_line = SIGNALS[sig]
    config = write_config(tmp_path, slow_emu)
    db = tmp_path / "syncd.db"
    proc = await start_syncd(config, "sync", "shop")
    await until(lambda: stored_count(db) >= 100, limit=30)
    proc.send_signal(sig)
    async with asyncio.timeout(15):
        _, stderr_bytes = await proc.communicate()
    stderr = stderr_bytes.decode()
    assert proc.returncode == code, stderr[-2000:]
    ((status, error, seen, pages),) = query(
        db, "SELECT status, error, items_seen, pages FROM sync_runs"
    )
    assert status == "cancelled", (status, error)
    assert error == reason
    assert stored_count(db) == seen == pages * 10  # whole pages only
    lines = stderr.strip().splitlines()
    assert lines[-1] == last_line
    events = [json.loads(line) for line in lines if line.startswith("{")]
    finished = [e for e in events if e["event"] == "sync.finished"]
    assert len(finished) == 1 and finished[0]["status"] == "cancelled"
    assert "Traceback" not in stderr

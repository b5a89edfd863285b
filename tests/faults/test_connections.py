"""Connection resets and servers closing reused keep-alive connections under a request."""

from __future__ import annotations

from structlog.testing import capture_logs

from syncd.emulator import Fault
from tests.faults.lab import FaultLab


async def test_resets_and_keep_alive_disconnects_are_retried(lab: FaultLab) -> None:
    """A reset that aiohttp's own single retry cannot absorb reaches syncd's retry; disconnects
    of reused connections are retried by one or the other; every product arrives once."""
    emu = await lab.start_emulator(products=300)
    await lab.open()
    # Page 1 is asked alone: its request, and aiohttp's own retry of it, are both reset.
    emu.adobe.faults.add(Fault("reset", times=2))
    emu.adobe.faults.add(Fault("disconnect", reused_only=True, probability=0.3, times=None))
    with capture_logs() as logs:
        result = await lab.sync()
    assert result.ok, result.error
    reasons = [e["reason"] for e in logs if e["event"] == "http.retry_scheduled"]
    assert any("ClientOSError" in r and "Connection reset by peer" in r for r in reasons)
    assert result.totals.retries == len(reasons) >= 1
    dropped = [r for r in emu.adobe.stats.log if r.status == 0]
    assert len(dropped) == emu.adobe.stats.faults_injected > 2
    # More requests reached the API than syncd sent: aiohttp retried some drops by itself.
    assert emu.adobe.stats.requests > result.totals.requests
    check = lab.check()
    assert check.exact, check
    lab.record("connection-faults", "succeeded", check)

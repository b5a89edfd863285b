"""Connection resets and servers closing reused keep-alive connections under a request."""

from __future__ import annotations

from syncd.emulator import Fault
from tests.faults.lab import FaultLab


async def test_resets_and_keep_alive_disconnects_are_retried(lab: FaultLab) -> None:
    """A reset that aiohttp's own single retry cannot absorb reaches syncd's retry; disconnects
    of reused connections are retried by one or the other; every product arrives once."""
    emu = await lab.start_emulator(products=300)
    await lab.open()
    before = lab.stored()
    changed = lab.change_catalog()
    sent, logged = emu.adobe.stats.requests, len(emu.adobe.stats.log)
    # Page 1 is asked alone: its request, and aiohttp's own retry of it, are both reset.
    lab.inject(
        Fault("reset", times=2),
        Fault("disconnect", reused_only=True, probability=0.3, times=None),
    )
    seen = len(lab.logs)
    result = await lab.sync(kind="full")
    lab.expect(result.ok, result.error)
    reasons = [e["reason"] for e in lab.events("http.retry_scheduled", seen)]
    lab.expect(
        any("ClientOSError" in r and "Connection reset by peer" in r for r in reasons),
        'any("ClientOSError" in r and "Connection reset by peer" in r for r in reasons)',
    )
    lab.expect(
        result.totals.retries == len(reasons) >= 1, "result.totals.retries == len(reasons) >= 1"
    )
    dropped = [r for r in list(emu.adobe.stats.log)[logged:] if r.status == 0]
    lab.expect(
        len(dropped) == emu.adobe.stats.faults_injected > 2,
        "len(dropped) == emu.adobe.stats.faults_injected > 2",
    )
    # More requests reached the API than syncd sent: aiohttp retried some drops by itself.
    lab.expect(
        emu.adobe.stats.requests - sent > result.totals.requests,
        "emu.adobe.stats.requests - sent > result.totals.requests",
    )
    stored = lab.stored()
    lab.expect(
        all(stored[sku] == item for sku, item in before.items() if sku not in changed),
        "all(stored[sku] == item for sku, item in before.items() if sku not in changed)",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    lab.heal()
    await lab.finish("connection-faults")

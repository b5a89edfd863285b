"""429 storm: 30% of the API's answers are 429 with Retry-After; the run slows down and completes."""

from __future__ import annotations

from syncd.emulator import Fault
from tests.faults.lab import FaultLab


async def test_a_429_storm_is_ridden_out_at_a_lower_rate(lab: FaultLab) -> None:
    """Every 429 is retried after its pause, the adaptive rate is cut and logged, nothing is lost."""
    emu = await lab.start_emulator(products=1000)
    await lab.open()
    lab.change_catalog()
    lab.inject(Fault("status", status=429, probability=0.3, times=None))
    seen = len(lab.logs)
    result = await lab.sync(kind="full")
    assert result.ok, result.error
    t = result.totals
    # Seeded: the storm really hit about 30% of the answers, and only 429s were retried.
    assert 0.2 <= t.rate_limited / t.requests <= 0.4
    assert t.retries == t.rate_limited == emu.adobe.stats.rate_limited
    assert t.requests == 101 + t.rate_limited
    paused = lab.events("http.rate_limited", seen)
    assert len(paused) == t.rate_limited and all(e["retry_after"] == 1.0 for e in paused)
    cuts = [e for e in lab.events("http.rate_adjusted", seen) if e["reason"] == "rate_limited"]
    assert cuts, "a 429 must lower the source's rate"
    assert all(e["new_rate"] >= lab.runtime.settings.http.rate_floor for e in cuts)  # type: ignore[union-attr]
    # One cut per flight of requests: never more cuts than 429s.
    assert len(cuts) <= t.rate_limited
    check = lab.verify()
    assert check.exact, check
    lab.heal()
    await lab.finish("rate-limit-storm")

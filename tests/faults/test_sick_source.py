"""One sick source among two, under the real daemon and scheduler (real time: APScheduler's)."""

from __future__ import annotations

import time

from structlog.testing import capture_logs

from syncd.config import HttpSettings
from syncd.emulator import Fault
from tests.faults.lab import FaultLab

FAST = HttpSettings(max_attempts=2, backoff_base=0.001, backoff_cap=0.01)


async def test_a_sick_source_is_backed_off_and_recovers_while_the_other_runs_on(
    real_lab: FaultLab,
) -> None:
    """Two failed runs in a row open the breaker: the sick source's next run moves out by the
    backoff (past its 1 s schedule) and is logged; the healthy source keeps its schedule; once
    the API is well, the delayed run succeeds and the breaker closes on its own."""
    lab = real_lab
    sick_emu = await lab.start_emulator(products=50, seed=1)
    well_emu = await lab.start_emulator(products=50, seed=2)
    sick = lab.source("sick", sick_emu, breaker_threshold=2, breaker_base_delay=1.5)
    well = lab.source("well", well_emu)
    await lab.open(sick, well, http=FAST)
    sick_emu.adobe.faults.add(Fault("status", status=500, times=None))
    with capture_logs() as logs:
        daemon = await lab.daemon()
        await lab.until(lambda: any(e["event"] == "source.backoff" for e in logs))
        opened_at = time.monotonic()
        backoff = next(e for e in logs if e["event"] == "source.backoff")
        assert (backoff["source"], backoff["failures"], backoff["delay_s"]) == ("sick", 2, 1.5)
        assert "answered HTTP 500" in backoff["error"]
        next_run = daemon.next_run("sick")
        assert next_run is not None and next_run.isoformat() == backoff["next_run"]
        well_next = daemon.next_run("well")
        assert well_next is not None and (next_run - well_next).total_seconds() > 0.4

        sick_emu.adobe.faults.clear()
        await lab.until(lambda: any(e["event"] == "source.recovered" for e in logs))
    recovered = next(e for e in logs if e["event"] == "source.recovered")
    assert (recovered["source"], recovered["after_failures"]) == ("sick", 2)
    # Nothing reached the sick API between the backoff and the delayed run (≥ 1.5 s later).
    after = [r.at for r in sick_emu.adobe.stats.log if r.at > opened_at]
    assert after and min(after) >= opened_at + 1.3  # the 1 s schedule alone: ~opened_at + 1
    daemon.stop()  # no more runs: the figures below are final
    sick_runs = [r for r in daemon.results if r.source == "sick"]
    assert [r.status for r in sick_runs] == ["failed", "failed", "succeeded"]
    well_runs = [r for r in daemon.results if r.source == "well"]
    assert len(well_runs) >= 3 and all(r.ok for r in well_runs)
    assert lab.check("well", well_emu).exact
    check = lab.check("sick", sick_emu)
    assert check.exact, check
    lab.record("sick-source-breaker", "failed ×2 → backed off 1.5 s → recovered", check)

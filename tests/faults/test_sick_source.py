"""One sick source among two, under the daemon: its breaker backs it off, the other runs on.

All on the lab's clock: instead of waiting for the delayed run, the test checks when the scheduler
would run it, and then runs it as its job would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from syncd.config import HttpSettings
from syncd.emulator import Fault
from syncd.schedule import parse_schedule
from tests.faults.lab import FaultLab
from tests.support import until

FAST = HttpSettings(max_attempts=2, backoff_base=0.001, backoff_cap=0.01)
BACKOFF = 7200.0  # longer than the hourly schedule: the breaker must move the sick job out


async def test_a_sick_source_is_backed_off_and_recovers_while_the_other_runs_on(
    lab: FaultLab,
) -> None:
    """Two failed runs in a row open the breaker: the sick source's next run moves out by the
    backoff and is logged, the healthy source keeps its schedule and its runs, nothing reaches
    the sick API meanwhile; once the API is well, the delayed run succeeds and closes the breaker."""
    sick_emu = await lab.start_emulator(products=50, seed=1)
    well_emu = await lab.start_emulator(products=50, seed=2)
    sick = lab.source(
        "sick",
        sick_emu,
        breaker_threshold=2,
        breaker_base_delay=BACKOFF,
        breaker_max_delay=4 * BACKOFF,
    )
    well = lab.source("well", well_emu)
    await lab.open(sick, well, http=FAST)
    daemon = lab.daemon
    assert daemon is not None
    good = lab.stored("sick")
    lab.change_catalog(sick_emu)
    lab.change_catalog(well_emu)
    well_next = daemon.next_run("well")
    lab.inject(Fault("status", status=500, times=None), emu=sick_emu)

    seen = len(lab.logs)
    lab.expect(
        (await lab.sync("sick")).status == "failed", '(await lab.sync("sick")).status == "failed"'
    )
    lab.expect((await lab.sync("well")).ok, '(await lab.sync("well")).ok')
    lab.expect(not lab.events("source.backoff", seen), 'not lab.events("source.backoff", seen)')
    # The sick job's slot comes (on APScheduler's clock, the real one) while the scheduler is
    # held: released after the breaker has acted, it fires the job unless the breaker moved it.
    scheduler = daemon._scheduler
    scheduler.pause()
    scheduler.reschedule_in("sick", datetime.now(UTC))
    lab.expect(
        (await lab.sync("sick")).status == "failed", '(await lab.sync("sick")).status == "failed"'
    )
    [backoff] = lab.events("source.backoff", seen)
    lab.expect(
        (backoff["source"], backoff["failures"], backoff["delay_s"]) == ("sick", 2, BACKOFF),
        '(backoff["source"], backoff["failures"], backoff["delay_s"]) == ("sick", 2, BACKOFF)',
    )
    lab.expect("answered HTTP 500" in backoff["error"], '"answered HTTP 500" in backoff["error"]')
    next_run = daemon.next_run("sick")
    assert next_run is not None and next_run.isoformat() == backoff["next_run"]
    lab.expect(
        BACKOFF - 1 < (next_run - lab.clock.now()).total_seconds() <= BACKOFF,
        "BACKOFF - 1 < (next_run - lab.clock.now()).total_seconds() <= BACKOFF",
    )
    lab.expect(daemon.next_run("well") == well_next, 'daemon.next_run("well") == well_next')
    check = lab.unharmed(good, "sick", sick_emu)
    lab.expect(check.exact, check)

    asked = sick_emu.adobe.stats.requests
    scheduler.resume()
    passed = asyncio.Event()

    async def probe() -> None:
        passed.set()

    # A job due now: once it has run, the scheduler has been over its jobs since the release.
    scheduler.add("probe", parse_schedule("1h"), probe, datetime.now(UTC))
    await until(passed.is_set)
    lab.expect(daemon.next_run("sick") == next_run, 'daemon.next_run("sick") == next_run')
    lab.expect((await lab.sync("well")).ok, '(await lab.sync("well")).ok')
    lab.expect(lab.verify("well", well_emu).exact, 'lab.verify("well", well_emu).exact')
    lab.expect(sick_emu.adobe.stats.requests == asked, "sick_emu.adobe.stats.requests == asked")

    lab.heal(sick_emu)
    probe = await lab.sync("sick")  # the delayed run, which the scheduler would start at next_run
    lab.expect(probe.ok, probe.error)
    [recovered] = lab.events("source.recovered", seen)
    lab.expect(
        (recovered["source"], recovered["after_failures"]) == ("sick", 2),
        '(recovered["source"], recovered["after_failures"]) == ("sick", 2)',
    )
    await lab.finish("sick-source-breaker")

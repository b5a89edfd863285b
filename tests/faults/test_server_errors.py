"""5xx: short bursts are retried away; a storm spends the run's retry budget and stops the run."""

from __future__ import annotations

from structlog.testing import capture_logs

from syncd.emulator import Fault
from syncd.progress import FullScanCheckpoint
from tests.faults.lab import LAB_HTTP, FaultLab


async def test_bursts_of_server_errors_are_retried(lab: FaultLab) -> None:
    """Three bursts of three 5xx answers cost nine backed-off retries and nothing else."""
    emu = await lab.start_emulator(products=300)
    await lab.open()
    for status, after in ((503, 3), (502, 12), (500, 20)):
        emu.adobe.faults.add(Fault("status", status=status, after=after, times=3))
    with capture_logs() as logs:
        result = await lab.sync()
    assert result.ok, result.error
    assert (result.totals.retries, result.totals.requests) == (9, 39 + 1)  # + the catalog probe
    scheduled = [e for e in logs if e["event"] == "http.retry_scheduled"]
    assert len(scheduled) == 9
    assert {e["reason"].split("answered ")[1][:8] for e in scheduled} == {
        "HTTP 500",
        "HTTP 502",
        "HTTP 503",
    }
    assert all(0 <= e["delay"] <= LAB_HTTP.backoff_cap for e in scheduled)
    check = lab.check()
    assert check.exact, check
    lab.record("server-error-bursts", "succeeded", check)


async def test_a_server_error_storm_spends_the_retry_budget_and_the_next_run_resumes(
    lab: FaultLab,
) -> None:
    """Every answer 503: the run stops at its budget as failed, keeps its pages and checkpoint;
    once the API is back the next run asks only for the pages it is missing."""
    emu = await lab.start_emulator(products=300)
    http = LAB_HTTP.model_copy(update={"retry_budget_min": 5})
    await lab.open(http=http)
    emu.adobe.faults.add(Fault("status", status=503, after=8, times=None))
    failed = await lab.sync()
    assert failed.status == "failed"
    error = failed.error or ""
    assert error.startswith("retry budget exhausted: ")
    assert "budget: 5 + 20% of the requests sent" in error
    assert "answered HTTP 503" in error and "\n" not in error
    t = failed.totals
    # The budget, not max_attempts (6), stopped it: fewer than 5 retries per worker on average.
    assert t.retries >= 5 + 0.2 * (t.requests - 1) and t.retries < 4 * 5
    assert t.pages >= 1 and emu.adobe.stats.requests == t.requests
    state = await lab.runtime.store.source_state("shop")  # type: ignore[union-attr]
    checkpoint = FullScanCheckpoint.decode(state.checkpoint)
    assert checkpoint is not None and len(checkpoint.done) == t.pages
    stored = lab.stored()
    assert len(stored) == 10 * t.pages and lab.check().duplicated == 0

    emu.adobe.faults.clear()
    resumed = await lab.sync()
    assert resumed.ok, resumed.error
    # Page 1 again (for total_count), then only the pages the failed run had not stored, then
    # the catalog probe.
    assert resumed.totals.requests == 1 + (30 - len(checkpoint.done - {1}) - 1) + 1
    assert lab.intact(stored)
    check = lab.check()
    assert check.exact, check
    lab.record("server-error-storm", "failed (retry budget) → resumed, succeeded", check)

"""5xx: short bursts are retried away; a storm spends the run's retry budget and stops the run."""

from __future__ import annotations

import math

from syncd.emulator import Fault
from syncd.progress import FullScanCheckpoint
from tests.faults.lab import LAB_HTTP, FaultLab

PRODUCTS = 300
PAGES = math.ceil((PRODUCTS + 1) / 10)  # the catalog, and the product added before the fault


async def test_bursts_of_server_errors_are_retried(lab: FaultLab) -> None:
    """Three bursts of three 5xx answers cost nine backed-off retries and nothing else."""
    await lab.start_emulator(products=PRODUCTS)
    await lab.open()
    before = lab.stored()
    changed = lab.change_catalog()
    lab.inject(
        *(Fault("status", status=s, after=a, times=3) for s, a in ((503, 3), (502, 12), (500, 20)))
    )
    seen = len(lab.logs)
    result = await lab.sync(kind="full")
    lab.expect(result.ok, result.error)
    lab.expect(
        (result.totals.retries, result.totals.requests) == (9, PAGES + 9 + 1),
        "(result.totals.retries, result.totals.requests) == (9, PAGES + 9 + 1)",
    )
    scheduled = lab.events("http.retry_scheduled", seen)
    lab.expect(len(scheduled) == 9, "len(scheduled) == 9")
    lab.expect(
        {e["reason"].split("answered ")[1][:8] for e in scheduled}
        == {
            "HTTP 500",
            "HTTP 502",
            "HTTP 503",
        },
        '{e["reason"].split("answered ")[1][:8] for e in scheduled} == {         "HTTP 500",         "HTTP 502",         "HTTP 503",     }',
    )
    lab.expect(
        all(0 <= e["delay"] <= LAB_HTTP.backoff_cap for e in scheduled),
        'all(0 <= e["delay"] <= LAB_HTTP.backoff_cap for e in scheduled)',
    )
    stored = lab.stored()
    lab.expect(
        all(stored[sku] == item for sku, item in before.items() if sku not in changed),
        "all(stored[sku] == item for sku, item in before.items() if sku not in changed)",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    await lab.finish("server-error-bursts")


async def test_a_server_error_storm_spends_the_retry_budget_and_the_next_run_resumes(
    lab: FaultLab,
) -> None:
    """Every answer 503: the run stops at its budget as failed, keeps its pages and checkpoint,
    and what was stored before; once the API is back, the next full run asks only for the pages
    it is missing."""
    emu = await lab.start_emulator(products=PRODUCTS)
    http = LAB_HTTP.model_copy(update={"retry_budget_min": 5})
    await lab.open(http=http)
    before = lab.stored()
    lab.change_catalog()
    sent = emu.adobe.stats.requests
    lab.inject(Fault("status", status=503, after=8, times=None))
    failed = await lab.sync(kind="full")
    lab.expect(failed.status == "failed", 'failed.status == "failed"')
    error = failed.error or ""
    lab.expect(
        error.startswith("retry budget exhausted: "), 'error.startswith("retry budget exhausted: ")'
    )
    lab.expect(
        "budget: 5 + 20% of the requests sent" in error,
        '"budget: 5 + 20% of the requests sent" in error',
    )
    lab.expect(
        "answered HTTP 503" in error and "\n" not in error,
        '"answered HTTP 503" in error and "\\n" not in error',
    )
    t = failed.totals
    # The budget, not max_attempts (6), stopped it: fewer than 5 retries per worker on average.
    lab.expect(
        t.retries >= 5 + 0.2 * (t.requests - 1) and t.retries < 4 * 5,
        "t.retries >= 5 + 0.2 * (t.requests - 1) and t.retries < 4 * 5",
    )
    lab.expect(
        t.pages >= 1 and emu.adobe.stats.requests - sent == t.requests,
        "t.pages >= 1 and emu.adobe.stats.requests - sent == t.requests",
    )
    state = await lab.runtime.store.source_state("shop")  # type: ignore[union-attr]
    checkpoint = FullScanCheckpoint.decode(state.checkpoint)
    assert checkpoint is not None and len(checkpoint.done) == t.pages
    check = lab.unharmed(before)
    lab.expect(check.exact, check)

    lab.heal()
    seen = len(lab.logs)
    resumed = await lab.sync(kind="full")
    lab.expect(resumed.ok, resumed.error)
    lab.expect(
        [e["pages_done"] for e in lab.events("sync.resumed", seen)] == [len(checkpoint.done)],
        '[e["pages_done"] for e in lab.events("sync.resumed", seen)] == [len(checkpoint.done)]',
    )
    # Page 1 again (for total_count), then only the pages the failed run had not stored, then the
    # catalog probe.
    lab.expect(
        resumed.totals.requests == 1 + (PAGES - 1 - len(checkpoint.done - {1})) + 1,
        "resumed.totals.requests == 1 + (PAGES - 1 - len(checkpoint.done - {1})) + 1",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    await lab.finish("server-error-storm")

"""Answers that arrive too late or unusable: slow, truncated, malformed JSON, proxy HTML pages.

Each is retried while it is occasional; when every answer is bad, the run fails with one line
naming the URL and what was wrong, and the products stored before are untouched.
"""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.emulator import Fault
from tests.faults.lab import FaultLab


async def baseline(lab: FaultLab, **source: Any) -> dict[str, dict[str, Any]]:
    """A clean first sync, then the catalog changes (so a later run has something to write)."""
    emu = await lab.start_emulator(products=200)
    await lab.open(lab.source(**source))
    first = await lab.sync()
    assert first.ok, first.error
    for sku in list(emu.adobe.catalog.skus())[::20]:
        emu.adobe.catalog.update(sku, price=1.0)
    return lab.stored()


async def test_answers_slower_than_the_timeout(lab: FaultLab) -> None:
    """25% of answers come 400 ms late against a 100 ms timeout: retried; then all late: failed."""
    before = await baseline(lab, request_timeout=0.1)
    emu = lab.emu
    emu.adobe.faults.add(Fault("slow", delay=0.4, probability=0.25, times=None))
    with capture_logs() as logs:
        result = await lab.sync(kind="full")
    assert result.ok, result.error
    timeouts = [e for e in logs if "timed out after 0.1s" in e.get("reason", "")]
    # Every late answer cost a retry (a busy machine may add a late one of its own).
    assert result.totals.retries == len(timeouts) >= emu.adobe.stats.faults_injected > 0
    check = lab.check()
    assert check.exact, check
    good = lab.stored()
    assert good != before  # the run stored the catalog's changes

    emu.adobe.faults.clear()
    emu.adobe.faults.add(Fault("slow", delay=0.4, times=None))
    emu.adobe.catalog.update(next(emu.adobe.catalog.skus()), price=2.0)
    failed = await lab.sync(kind="full")
    assert failed.status == "failed"
    assert failed.error == f"GET {emu.url}/rest/V1/products timed out after 0.1s"
    assert failed.totals.requests == 6  # page 1, max_attempts times, and not one more
    assert lab.stored() == good  # the previous good data, untouched
    assert lab.check().lost == 1  # only the change made meanwhile, for the next run
    lab.record("slow-responses", "succeeded; all slow: failed (timeout), data intact", check)


@pytest.mark.parametrize(
    ("kind", "scenario", "reason"),
    [
        ("truncated", "truncated-json", "a malformed or truncated JSON body"),
        ("malformed", "malformed-json", "a malformed or truncated JSON body"),
        ("html", "html-error-pages", "an HTML page (text/html)"),
    ],
)
async def test_unusable_bodies_are_retried_then_reported(
    lab: FaultLab, kind: str, scenario: str, reason: str
) -> None:
    """20% bad bodies: retried, each retry names the bad body; all bad: the run fails naming it."""
    before = await baseline(lab)
    emu = lab.emu
    emu.adobe.faults.add(Fault(kind, status=502, probability=0.2, times=None))  # type: ignore[arg-type]
    with capture_logs() as logs:
        result = await lab.sync(kind="full")
    assert result.ok, result.error
    named = [e for e in logs if e["event"] == "http.retry_scheduled" and reason in e["reason"]]
    assert result.totals.retries == len(named) == emu.adobe.stats.faults_injected > 0
    check = lab.check()
    assert check.exact, check
    good = lab.stored()
    assert good != before

    emu.adobe.faults.clear()
    emu.adobe.faults.add(Fault(kind, status=502, times=None))  # type: ignore[arg-type]
    failed = await lab.sync(kind="full")
    assert failed.status == "failed"
    error = failed.error or ""
    assert error.startswith(f"GET {emu.url}/rest/V1/products ") and reason in error
    assert "\n" not in error
    assert lab.stored() == good and lab.check().exact
    lab.record(scenario, f"succeeded; all {kind}: failed naming the body, data intact", check)

"""Answers that arrive too late or unusable: slow, truncated, malformed JSON, proxy HTML pages.

Each is retried while it is occasional; when every answer is bad, the run fails with one line
naming the URL and what was wrong, and the products stored before are untouched.
"""

from __future__ import annotations

from typing import Any

import pytest

from syncd.emulator import Fault
from tests.faults.lab import FaultLab


async def good_first_sync(lab: FaultLab, **source: Any) -> None:
    """The daemon's first sync of 200 products, then a little churn for the faulted runs."""
    await lab.start_emulator(products=200)
    await lab.open(lab.source(**source))
    lab.change_catalog()


async def test_answers_slower_than_the_timeout(lab: FaultLab) -> None:
    """25% of answers (5 at most) 400 ms late against a 100 ms timeout: retried; then all late:
    the run fails naming the timeout, the stored products stay as they were; healed, it syncs."""
    # Real delays, short and configurable: the timeout is aiohttp's own, on the real clock.
    await good_first_sync(lab, request_timeout=0.1)
    emu = lab.emu
    # Five at most: no page can be late max_attempts (6) times in a row.
    lab.inject(Fault("slow", delay=0.4, probability=0.25, times=5))
    seen = len(lab.logs)
    result = await lab.sync(kind="full")
    lab.expect(result.ok, result.error)
    retried = lab.events("http.retry_scheduled", seen)
    timeouts = [e for e in retried if "timed out after 0.1s" in e["reason"]]
    # Every late answer cost a retry (a busy machine may add a late one of its own).
    lab.expect(
        result.totals.retries == len(timeouts) == len(retried),
        "result.totals.retries == len(timeouts) == len(retried)",
    )
    lab.expect(
        len(timeouts) >= emu.adobe.stats.faults_injected > 0,
        "len(timeouts) >= emu.adobe.stats.faults_injected > 0",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    good = lab.stored()

    lab.heal()
    lab.inject(Fault("slow", delay=0.4, times=None))
    lab.change_catalog()
    failed = await lab.sync(kind="full")
    lab.expect(failed.status == "failed", 'failed.status == "failed"')
    lab.expect(
        failed.error == f"GET {emu.url}/rest/V1/products timed out after 0.1s",
        'failed.error == f"GET {emu.url}/rest/V1/products timed out after 0.1s"',
    )
    lab.expect(failed.totals.requests == 6, "failed.totals.requests == 6")
    lab.expect(lab.stored() == good, "lab.stored() == good")
    check = lab.unharmed(good)
    lab.expect(check.exact, check)

    lab.heal()
    recovered = await lab.sync(kind="full")
    lab.expect(recovered.ok, recovered.error)
    await lab.finish("slow-responses")


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
    """20% bad bodies: retried, each retry names the bad body; all bad: the run fails naming it,
    the stored products stay as they were; healed, the next run syncs."""
    await good_first_sync(lab)
    emu = lab.emu
    lab.inject(Fault(kind, status=502, probability=0.2, times=None))  # type: ignore[arg-type]
    seen = len(lab.logs)
    result = await lab.sync(kind="full")
    lab.expect(result.ok, result.error)
    named = [e for e in lab.events("http.retry_scheduled", seen) if reason in e["reason"]]
    lab.expect(
        result.totals.retries == len(named) == emu.adobe.stats.faults_injected > 0,
        "result.totals.retries == len(named) == emu.adobe.stats.faults_injected > 0",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    good = lab.stored()

    lab.heal()
    lab.inject(Fault(kind, status=502, times=None))  # type: ignore[arg-type]
    lab.change_catalog()
    failed = await lab.sync(kind="full")
    lab.expect(failed.status == "failed", 'failed.status == "failed"')
    error = failed.error or ""
    lab.expect(
        error.startswith(f"GET {emu.url}/rest/V1/products ") and reason in error,
        'error.startswith(f"GET {emu.url}/rest/V1/products ") and reason in error',
    )
    lab.expect("\n" not in error, '"\\n" not in error')
    lab.expect(lab.stored() == good, "lab.stored() == good")
    check = lab.unharmed(good)
    lab.expect(check.exact, check)

    lab.heal()
    recovered = await lab.sync(kind="full")
    lab.expect(recovered.ok, recovered.error)
    await lab.finish(scenario)

"""A deliberately broken client makes the fault suite fail: the scenarios' rows say so.

Each test breaks one guard through a seam that survives a refactor of syncd's client (aiohttp's
own session, the redaction boundary's class), replays a scenario of the suite, and checks that the
row the lab records for it shows the failure and that `finish`'s assertions then fail. The rows
are kept out of the session's results (`lab.sink`): the report holds the real client's rows. The
completeness check switched off is tested in test_pages.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from syncd.emulator import Fault
from syncd.redaction import Redactor
from tests.elsewhere import Elsewhere
from tests.faults.lab import FaultLab


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    """The origin a redirect points at."""
    async with Elsewhere() as server:
        yield server


@pytest.fixture
def follows_redirects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every aiohttp request follows redirects, whatever syncd asked for."""
    original = aiohttp.ClientSession._request

    async def following(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> Any:
        kwargs["allow_redirects"] = True
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", following)


@pytest.mark.usefixtures("follows_redirects")
@pytest.mark.parametrize(
    ("target", "status", "scenario"),
    [("token", 307, "token-endpoint-redirect"), ("api", 302, "api-redirect")],
)
async def test_a_client_that_follows_redirects_records_a_leak(
    lab: FaultLab, elsewhere: Elsewhere, target: str, status: int, scenario: str
) -> None:
    """Redirects followed: the credentials reach the other origin, the row says CREDENTIAL
    LEAKED, and `finish` fails."""
    lab.sink = []
    await lab.start_emulator(products=100)
    await lab.open()
    lab.watch(elsewhere)
    lab.change_catalog()
    lab.revoke_tokens()
    lab.inject(Fault("redirect", target=target, status=status, location=elsewhere.url))  # type: ignore[arg-type]
    await lab.run()
    lab.heal()
    result = await lab.conclude(scenario)
    assert "CREDENTIAL LEAKED" in result.outcome, result
    assert "requests to the other origin" in result.credentials
    assert elsewhere.received
    assert lab.sink == [result]
    with pytest.raises(AssertionError, match="CREDENTIAL LEAKED"):
        lab.assert_recorded(result)


async def test_a_client_without_redaction_records_a_leak(
    lab: FaultLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redaction off (the redactor returns its input): the echoed secret reaches the log output,
    the run errors and the stored text, the row says CREDENTIAL LEAKED and `finish` fails."""
    monkeypatch.setattr(Redactor, "redact", lambda self, text: text)
    lab.sink = []
    await lab.start_emulator(products=100, client_secret="p8e-broken-client-secret-0001")
    await lab.open()
    lab.change_catalog()
    lab.revoke_tokens()
    lab.inject(Fault("echo", target="token", status=500, times=None))
    await lab.run()
    lab.heal()
    result = await lab.conclude("token-endpoint-echo")
    assert "CREDENTIAL LEAKED" in result.outcome, result
    assert "client secret 0 in log output" in result.credentials, result.credentials
    assert "client secret 0 in run errors" in result.credentials, result.credentials
    with pytest.raises(AssertionError, match="CREDENTIAL LEAKED"):
        lab.assert_recorded(result)


async def test_a_scenario_check_that_fails_is_recorded_before_anything_asserts(
    lab: FaultLab,
) -> None:
    """A scenario's own check made before its row (`expect`) that does not hold: the row is
    still recorded, its outcome names the check, and `assert_recorded` then fails on it."""
    lab.sink = []
    await lab.start_emulator(products=50)
    await lab.open()
    result = await lab.sync()
    lab.expect(result.totals.items_seen == 51, "the run saw 51 products")
    recorded = await lab.conclude("server-error-bursts")
    assert lab.sink == [recorded]
    assert "1 CHECKS FAILED (the run saw 51 products)" in recorded.outcome, recorded.outcome
    with pytest.raises(AssertionError, match="the run saw 51 products"):
        lab.assert_recorded(recorded)

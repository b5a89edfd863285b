"""The token endpoint misbehaving: a short outage, a long one, and a client it refuses for good."""

from __future__ import annotations

from syncd.emulator import Fault
from tests.faults.lab import FaultLab
from tests.support import query


def token_events(lab: FaultLab) -> list[str]:
    return [row[0] for row in query(lab.db, "SELECT event FROM token_events ORDER BY id")]


async def test_a_short_outage_is_retried_through(lab: FaultLab) -> None:
    """503 for 2 s: the token request backs off (on the clock) until IMS answers again."""
    emu = await lab.start_emulator(products=100)
    await lab.open()
    emu.adobe.faults.add(Fault("status", target="token", status=503, times=None, duration=2.0))
    result = await lab.sync()
    assert result.ok, result.error
    assert emu.adobe.stats.token_requests > 1
    assert emu.adobe.stats.faults_injected == emu.adobe.stats.token_requests - 1
    assert token_events(lab) == ["issued"]
    check = lab.check()
    assert check.exact, check
    lab.record("token-endpoint-blip", "succeeded", check)


async def test_a_long_outage_fails_the_run_and_the_daemon_carries_on(lab: FaultLab) -> None:
    """503 for an hour while a new token is needed: the run fails naming the endpoint, stored
    products stay as they were, the daemon keeps its schedule, and once IMS is back it syncs."""
    emu = await lab.start_emulator(products=100)
    await lab.open()
    assert (await lab.sync()).ok
    good = lab.stored()
    emu.adobe.revoke_tokens()
    emu.adobe.faults.add(Fault("status", target="token", status=503, times=None, duration=3600))
    daemon = await lab.daemon()
    await lab.until(lambda: len(daemon.results) >= 1)
    failed = daemon.results[0]
    assert failed.status == "failed"
    assert failed.error == (f"POST {emu.ims_token_url} answered HTTP 503: temporarily unavailable")
    assert emu.adobe.stats.token_requests == 1 + 6  # first run, then max_attempts in the outage
    assert lab.stored() == good
    assert daemon.next_run("shop") is not None

    lab.clock.advance(3600)  # type: ignore[attr-defined]  # the outage is over
    await lab.until(lambda: len(daemon.results) >= 2)
    assert daemon.results[1].ok, daemon.results[1].error
    assert token_events(lab)[-3:] == ["invalidated", "failed", "refreshed"]
    check = lab.check()
    assert check.exact, check
    lab.record("token-endpoint-outage", "failed (token endpoint 503) → next run succeeded", check)


async def test_invalid_client_fails_once_without_a_retry_loop(lab: FaultLab) -> None:
    """Token revoked and the client disabled: one token request, one clear error, no loop; the
    daemon keeps scheduling and syncs again once the client is enabled."""
    emu = await lab.start_emulator(products=100)
    await lab.open(lab.source(max_concurrency=8))
    assert (await lab.sync()).ok
    good = lab.stored()
    api_before, tokens_before = emu.adobe.stats.requests, emu.adobe.stats.token_requests
    emu.adobe.revoke_tokens()
    emu.adobe.set_client_disabled(True)
    daemon = await lab.daemon()
    await lab.until(lambda: len(daemon.results) >= 1)
    failed = daemon.results[0]
    assert failed.status == "failed"
    assert failed.error == (
        f"IMS token request to {emu.ims_token_url} refused with HTTP 400: "
        "invalid_client: client is disabled"
    )
    assert emu.adobe.config.client_secret not in (failed.error or "")
    stats = emu.adobe.stats
    assert (stats.requests - api_before, stats.token_requests - tokens_before) == (1, 1)
    assert lab.stored() == good

    emu.adobe.set_client_disabled(False)
    await lab.until(lambda: len(daemon.results) >= 2)
    assert daemon.results[1].ok, daemon.results[1].error
    assert emu.adobe.stats.token_requests == tokens_before + 2
    check = lab.check()
    assert check.exact, check
    lab.record("invalid-client", "failed (invalid_client, 1 token request) → succeeded", check)

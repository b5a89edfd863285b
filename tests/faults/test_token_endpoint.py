"""The token endpoint misbehaving: a short outage, a long one, and a client it refuses for good.

Each starts when the daemon needs a new token: every token it holds has been revoked.
"""

from __future__ import annotations

from syncd.emulator import Fault
from syncd.redaction import fingerprint
from tests.faults.lab import FaultLab
from tests.support import query


def token_events(lab: FaultLab) -> list[str]:
    return [row[0] for row in query(lab.db, "SELECT event FROM token_events ORDER BY id")]


async def test_a_short_outage_is_retried_through(lab: FaultLab) -> None:
    """503 for 2 s: the token request backs off (on the clock) until IMS answers again."""
    emu = await lab.start_emulator(products=100)
    await lab.open()
    before = lab.stored()
    changed = lab.change_catalog()
    tokens, faulted = emu.adobe.stats.token_requests, emu.adobe.stats.faults_injected
    lab.revoke_tokens()
    lab.inject(Fault("status", target="token", status=503, times=None, duration=2.0))
    started = lab.clock.monotonic()
    result = await lab.sync()
    lab.expect(result.ok, result.error)
    asked = emu.adobe.stats.token_requests - tokens
    lab.expect(
        asked > 1 and emu.adobe.stats.faults_injected - faulted == asked - 1,
        "asked > 1 and emu.adobe.stats.faults_injected - faulted == asked - 1",
    )
    lab.expect(lab.clock.monotonic() - started >= 2.0, "lab.clock.monotonic() - started >= 2.0")
    lab.expect(
        token_events(lab) == ["issued", "invalidated", "refreshed"],
        'token_events(lab) == ["issued", "invalidated", "refreshed"]',
    )
    stored = lab.stored()
    lab.expect(
        all(stored[sku] == item for sku, item in before.items() if sku not in changed),
        "all(stored[sku] == item for sku, item in before.items() if sku not in changed)",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    await lab.finish("token-endpoint-blip")


async def test_a_long_outage_fails_the_run_and_the_daemon_carries_on(lab: FaultLab) -> None:
    """503 for an hour while a new token is needed: the run fails naming the endpoint, stored
    products stay as they were, the daemon keeps its schedule, and once IMS is back it syncs."""
    emu = await lab.start_emulator(products=100)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    tokens = emu.adobe.stats.token_requests
    lab.revoke_tokens()
    lab.inject(Fault("status", target="token", status=503, times=None, duration=3600))
    failed = await lab.sync()
    lab.expect(failed.status == "failed", 'failed.status == "failed"')
    lab.expect(
        failed.error == (f"POST {emu.ims_token_url} answered HTTP 503: temporarily unavailable"),
        'failed.error == (f"POST {emu.ims_token_url} answered HTTP 503: temporarily unavailable")',
    )
    lab.expect(
        emu.adobe.stats.token_requests - tokens == 6, "emu.adobe.stats.token_requests - tokens == 6"
    )
    lab.expect(lab.stored() == good, "lab.stored() == good")
    check = lab.unharmed(good)
    lab.expect(check.exact, check)
    lab.expect(not lab.liveness_problems(), "the daemon alive and scheduling mid-scenario")

    lab.clock.advance(3600)  # the outage is over
    recovered = await lab.sync()
    lab.expect(recovered.ok, recovered.error)
    lab.expect(
        token_events(lab)[-3:] == ["invalidated", "failed", "refreshed"],
        'token_events(lab)[-3:] == ["invalidated", "failed", "refreshed"]',
    )
    await lab.finish("token-endpoint-outage")


async def test_invalid_client_fails_once_without_a_retry_loop(lab: FaultLab) -> None:
    """Token revoked and the client disabled: one token request, one clear error, no loop; the
    daemon keeps scheduling and syncs again once the client is enabled."""
    emu = await lab.start_emulator(products=100)
    await lab.open(lab.source(max_concurrency=8))
    good = lab.stored()
    lab.change_catalog()
    api_before, tokens_before = emu.adobe.stats.requests, emu.adobe.stats.token_requests
    lab.revoke_tokens()
    lab.disable_client()
    # The refusal quotes the form it received, client secret included (a careless gateway): the
    # error must name the secret by its fingerprint only.
    emu.adobe.faults.add(Fault("echo", target="token", status=400, body="invalid_client"))
    failed = await lab.sync()
    lab.expect(failed.status == "failed", 'failed.status == "failed"')
    secret = emu.adobe.config.client_secret
    lab.expect(
        (failed.error or "").startswith(
            f"IMS token request to {emu.ims_token_url} refused with HTTP 400: invalid_client: "
            f"request rejected; it carried grant_type=client_credentials; "
        ),
        failed.error,
    )
    lab.expect(
        f"client_secret={fingerprint(secret)}" in (failed.error or ""),
        'f"client_secret={fingerprint(secret)}" in (failed.error or "")',
    )
    lab.expect(secret not in (failed.error or ""), 'secret not in (failed.error or "")')
    lab.expect(
        secret not in repr(query(lab.db, "SELECT * FROM token_events")),
        'secret not in repr(query(lab.db, "SELECT * FROM token_events"))',
    )
    stats = emu.adobe.stats
    lab.expect(
        (stats.requests - api_before, stats.token_requests - tokens_before) == (1, 1),
        "(stats.requests - api_before, stats.token_requests - tokens_before) == (1, 1)",
    )
    lab.expect(lab.stored() == good, "lab.stored() == good")
    check = lab.unharmed(good)
    lab.expect(check.exact, check)
    lab.expect(not lab.liveness_problems(), "the daemon alive and scheduling mid-scenario")

    lab.disable_client(False)
    recovered = await lab.sync()
    lab.expect(recovered.ok, recovered.error)
    lab.expect(
        emu.adobe.stats.token_requests == tokens_before + 2,
        "emu.adobe.stats.token_requests == tokens_before + 2",
    )
    await lab.finish("invalid-client")

"""Error bodies that echo the credentials they received, under the daemon: nothing leaks anywhere.

From a good first sync, the token endpoint (500 on every attempt) or the API (5xx, then a 401
twice) answers with bodies quoting the client secret or the bearer token. Each run fails cleanly
with the fingerprints in its error, the data stays intact, the daemon keeps scheduling, and
neither the client secret nor any token reaches a sink the lab searches (`FaultLab.leaks`: the
log output, JSON at debug level; every text column; `/metrics`; the run errors). The row is
recorded before anything is asserted.
"""

from __future__ import annotations

from syncd.emulator import Fault
from syncd.redaction import fingerprint
from tests.faults.lab import FaultLab

CLIENT_SECRET = "p8e-fault-lab-client-secret-0001"


async def test_a_token_endpoint_echoing_the_secret_leaks_nothing(lab: FaultLab) -> None:
    """IMS answers 500 with a body quoting the client secret, on every attempt: the run fails
    naming the secret's fingerprint only; no sink holds the secret."""
    await lab.start_emulator(products=100, client_secret=CLIENT_SECRET)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    lab.revoke_tokens()
    lab.inject(Fault("echo", target="token", status=500, times=None))
    failed = await lab.sync()
    lab.heal()
    check = lab.unharmed(good)
    result = await lab.conclude("token-endpoint-echo")
    lab.assert_recorded(result)
    assert failed.status == "failed"
    assert f"client_secret={fingerprint(CLIENT_SECRET)}" in (failed.error or "")
    assert check.exact, check
    assert lab.integrity() == "ok"
    assert fingerprint(CLIENT_SECRET) in lab.log_output.getvalue()
    assert fingerprint(CLIENT_SECRET) in lab.texts()


async def test_api_errors_echoing_the_token_leak_nothing(lab: FaultLab) -> None:
    """The API answers 503 quoting the bearer token on every attempt, then 401 quoting it twice:
    two failed runs naming the token's fingerprint; no sink holds a token or the secret."""
    await lab.start_emulator(products=100, client_secret=CLIENT_SECRET)
    await lab.open()
    good = lab.stored()
    lab.change_catalog()
    lab.inject(Fault("echo", status=503, times=None))
    api_failure = await lab.sync()
    lab.heal()
    lab.inject(Fault("echo", status=401, times=2))
    refused = await lab.sync()
    lab.heal()
    check = lab.unharmed(good)
    result = await lab.conclude("api-error-echo")
    lab.assert_recorded(result)
    assert [r.status for r in (api_failure, refused)] == ["failed"] * 2
    assert "Authorization: Bearer sha256:" in (api_failure.error or ""), api_failure.error
    assert "refused with HTTP 401 twice" in (refused.error or ""), refused.error
    assert check.exact, check
    assert lab.integrity() == "ok"
    assert len(lab.secrets()) >= 3  # the client secret, the first sync's token, a new one

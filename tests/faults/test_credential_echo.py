"""Error bodies that echo the credentials they received, under the daemon: nothing leaks anywhere.

From a good first sync, the token endpoint (500 on every attempt) and then the API (5xx, then a
401 twice) answer with bodies quoting the client secret or the bearer token. Each run fails
cleanly, the data stays intact, the daemon keeps scheduling, and neither the client secret nor any
token reaches the log output (JSON at debug level), a text column of the database or `/metrics`.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import MutableMapping
from typing import Any

import structlog

from syncd.emulator import Fault
from syncd.logging import configure_logging
from syncd.redaction import fingerprint
from tests.faults.lab import FaultLab

Event = MutableMapping[str, Any]
CLIENT_SECRET = "p8e-fault-lab-client-secret-0001"


def _texts(db: str) -> str:
    """Every text value of every table, the persisted credential itself aside."""
    found: list[str] = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]:
                if table == "tokens" and column in ("access_token", "refresh_token"):
                    continue
                query = f"SELECT {column} FROM {table} WHERE typeof({column}) = 'text'"
                found.extend(row[0] for row in conn.execute(query))
    return "\n".join(found)


async def test_error_bodies_echoing_credentials_leak_nothing(lab: FaultLab) -> None:
    """Token endpoint 500s and API 5xx/401s whose bodies quote the credentials: three failed
    runs with the fingerprints in their errors, nothing lost, and no secret in any sink."""
    emu = await lab.start_emulator(products=100, client_secret=CLIENT_SECRET)
    runtime = await lab.open()
    # From here on the daemon logs as `syncd run` does (JSON lines, debug, through the
    # settings' redactor); the lab's own event list is still fed, unredacted, for its bookkeeping.
    stream = io.StringIO()
    configure_logging("debug", "json", stream, redactor=runtime.settings.redactor)

    def tee(_: Any, __: str, event: Event) -> Event:
        lab.logs.append(dict(event))
        return event

    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[lab.clock.stamp, tee, *processors])

    good = lab.stored()
    lab.change_catalog()
    lab.revoke_tokens()
    lab.note("token endpoint: 500 echoing the request, on every attempt")
    emu.adobe.faults.add(Fault("echo", target="token", status=500, times=None))
    token_failure = await lab.sync()
    emu.adobe.faults.clear()
    lab.note("API: 503 echoing the request, on every attempt")
    emu.adobe.faults.add(Fault("echo", status=503, times=None))
    api_failure = await lab.sync()
    emu.adobe.faults.clear()
    lab.note("API: 401 echoing the request, twice")
    emu.adobe.faults.add(Fault("echo", status=401, times=2))
    refused = await lab.sync()
    emu.adobe.faults.clear()

    assert [r.status for r in (token_failure, api_failure, refused)] == ["failed"] * 3
    assert f"client_secret={fingerprint(CLIENT_SECRET)}" in (token_failure.error or "")
    assert "Authorization: Bearer sha256:" in (api_failure.error or ""), api_failure.error
    assert "refused with HTTP 401 twice" in (refused.error or ""), refused.error
    check = lab.unharmed(good)
    assert check.exact, check
    lab.assert_alive()
    assert lab.integrity() == "ok"
    assert lab.daemon is not None
    metrics, _ = await lab.daemon.monitor.metrics()

    recovered = await lab.sync()
    assert recovered.ok, recovered.error
    assert lab.verify().exact

    secrets = {"client secret": CLIENT_SECRET}
    secrets.update({f"access token {i}": t for i, t in enumerate(emu.adobe.ims.tokens)})
    assert len(secrets) >= 3  # the good first sync's token, and those minted since
    sinks = {
        "log output": stream.getvalue(),
        "database": _texts(str(lab.db)),
        "/metrics": metrics.decode(),
        "run errors": " ".join(r.error or "" for r in (token_failure, api_failure, refused)),
    }
    leaked = [
        f"{kind} in {sink}"
        for kind, secret in secrets.items()
        for sink, text in sinks.items()
        if secret in text or secret[:24] in text or secret[-24:] in text
    ]
    assert leaked == []
    assert fingerprint(CLIENT_SECRET) in sinks["log output"]
    assert fingerprint(CLIENT_SECRET) in sinks["database"]

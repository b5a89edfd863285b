"""Echoed credentials reach no sink: each kind of secret, echoed in each error path, is absent from
the log output (JSON, at debug), every text column of every table, `syncd status/runs/events
--json` and `/metrics`; where it would have been, its fingerprint is.

Everything is the real thing: daemon, engine, clients, providers, token cache and store against the
emulator, whose `echo` fault answers with an error body quoting what each request carried.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from syncd.auth.americommerce.bootstrap import install_grant
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.cli import main
from syncd.config import AmeriCommerceSourceSettings, HealthSettings, HttpSettings
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.logging import configure_logging
from syncd.redaction import fingerprint
from syncd.runtime import Runtime
from tests.ac_support import APP, SCOPE, SECRET, ac_config, auth_settings, hand_grant, sha256_hex
from tests.clocks import FakeClock
from tests.support import adobe_source, settings_for

pytestmark = pytest.mark.timeout(60)
NEVER = "0 0 1 1 *"  # runs only when the test triggers them
STATIC = "static-admin-console-token-0001"
FAST = HttpSettings(max_attempts=2, backoff_base=0.001, backoff_cap=0.01)
CREDENTIALS_AT_REST = {("tokens", "access_token"), ("tokens", "refresh_token")}
"""The one place a credential belongs: the token the next process sends."""


def every_text(db: Path) -> dict[str, str]:
    """'table.column' -> every text value in it (one per line), of every table, credentials at
    rest aside."""
    found: dict[str, str] = {}
    for table, column, value in _texts(db):
        found[f"{table}.{column}"] = found.get(f"{table}.{column}", "") + value + "\n"
    return found


def _texts(db: Path) -> Iterator[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]:
                if (table, column) in CREDENTIALS_AT_REST:
                    continue
                rows = conn.execute(
                    f"SELECT {column} FROM {table} WHERE typeof({column}) = 'text'"
                ).fetchall()
                yield from ((table, column, row[0]) for row in rows)


def leaks(secrets: dict[str, str], sinks: dict[str, str]) -> list[str]:
    """'<kind> in <sink>' for each secret (or its first 12 characters) found in a sink."""
    return [
        f"{kind} in {sink}"
        for kind, secret in secrets.items()
        for sink, text in sinks.items()
        if secret in text or secret[:12] in text
    ]


def config_file(tmp_path: Path, emu: Emulator, db: Path) -> Path:
    """The TOML an operator would write for the same three sources and database."""
    adobe = emu.adobe.config
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[store]\npath = "{db}"\n'
        f'[[sources]]\nname = "shop"\nkind = "adobe_commerce"\nbase_url = "{emu.url}"\n'
        f'[sources.auth]\ntoken_url = "{emu.ims_token_url}"\nclient_id = "{adobe.client_id}"\n'
        f'client_secret = "{adobe.client_secret}"\norg_id = "{adobe.org_id}"\n'
        f'[[sources]]\nname = "ac"\nkind = "americommerce"\nbase_url = "{emu.url}"\n'
        f'[sources.auth]\napp_id = "{APP}"\napp_secret = "{SECRET}"\nscope = "{SCOPE}"\n'
        f'[[sources]]\nname = "acs"\nkind = "americommerce"\nbase_url = "{emu.url}"\n'
        f'[sources.auth]\nstatic_token = "{STATIC}"\n'
    )
    return path


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What `syncd ARGV` prints, stdout and stderr (run in a thread: it has its own loop)."""
    capsys.readouterr()
    await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return out + err


async def test_echoed_credentials_show_as_fingerprints_in_every_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """IMS 400 and 500, Adobe API 401 and 5xx, AmeriCommerce refresh 500 and 401, AmeriCommerce
    API 5xx and 401: every error body quotes the credentials its request carried (client secret,
    bearer and static tokens, refresh token, signature). None reaches a sink; fingerprints do."""
    config = EmulatorConfig(
        adobe=AdobeConfig(products=20, client_secret="p8e-echoed-ims-client-secret-0001"),
        americommerce=ac_config(static_tokens=(STATIC,)),
        seed=4,
    )
    db = tmp_path / "s.db"
    stream = io.StringIO()
    async with Emulator(config) as emu, aiohttp.ClientSession() as browser:
        ac = AmeriCommerceSourceSettings(
            name="ac",
            kind="americommerce",
            base_url=emu.url,  # type: ignore[arg-type]
            page_size=20,
            schedule=NEVER,
            auth=auth_settings(),
        )
        acs = AmeriCommerceSourceSettings(
            name="acs",
            kind="americommerce",
            base_url=emu.url,  # type: ignore[arg-type]
            page_size=20,
            schedule=NEVER,
            auth=auth_settings(app_id="", app_secret=None, static_token=STATIC),
        )
        settings = settings_for(
            db, adobe_source(emu, schedule=NEVER), ac, acs, http=FAST
        ).model_copy(update={"health": HealthSettings(enabled=True, port=0)})
        configure_logging("debug", "json", stream, redactor=settings.redactor)
        adobe, store = emu.adobe.faults, emu.americommerce.faults
        async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as daemon:

            async def run(name: str) -> str:
                await daemon.trigger(name)
                await daemon.monitor.after_run()
                result = daemon.results[-1]
                assert result.source == name and not result.ok, result
                return result.error or ""

            # IMS: the token endpoint echoes the client secret (400, then 500 on every attempt).
            adobe.add(Fault("echo", target="token", status=400))
            ims400 = await run("shop")
            assert "refused with HTTP 400: invalid_request: request rejected" in ims400, ims400
            assert f"client_secret={fingerprint(emu.adobe.config.client_secret)}" in ims400, ims400
            adobe.add(Fault("echo", target="token", status=500, times=None))
            await run("shop")
            adobe.clear()
            # Adobe API: a 401 twice (after one fresh token) and a 5xx echo the bearer token.
            adobe.add(Fault("echo", status=401, times=2))
            twice = await run("shop")
            assert "refused with HTTP 401 twice" in twice and "Bearer sha256:" in twice, twice
            adobe.add(Fault("echo", status=502, times=None))
            assert "Bearer sha256:" in await run("shop")
            adobe.clear()

            # AmeriCommerce OAuth: a grant, then a refused access token and refreshes that echo
            # the refresh token and signature (500: retried and failed; 401: the grant is gone).
            provider = AmeriCommerceTokenProvider(
                ac.auth, str(ac.base_url), runtime.pool, runtime.clock, source="ac"
            )
            clock = FakeClock(datetime.now(UTC))
            grant = await hand_grant(emu, browser, clock)
            await install_grant(runtime.cache, runtime.store, provider, grant, "ac", clock.now())
            emu.americommerce.revoke_tokens()
            store.add(Fault("echo", target="token", status=500, times=None))
            echoed = await run("ac")
            assert "refresh_token=sha256:" in echoed and "signature=sha256:" in echoed, echoed
            store.clear()
            store.add(Fault("echo", target="token", status=401))
            assert "the grant is gone" in await run("ac")
            # AmeriCommerce API with the static admin-console token: a 5xx and a 401 echo it.
            store.add(Fault("echo", status=500, times=None))
            assert f"X-AC-Auth-Token: {fingerprint(STATIC)}" in await run("acs")
            store.clear()
            store.add(Fault("echo", status=401, times=2))
            await run("acs")
            store.clear()

            assert daemon.health is not None
            url = f"http://127.0.0.1:{daemon.health.port}"
            async with browser.get(url + "/metrics") as answer:
                metrics = await answer.text()
            async with browser.get(url + "/readyz") as answer:
                ready = await answer.text()
        oauth = emu.americommerce.oauth
        secrets = {
            "client secret": emu.adobe.config.client_secret,
            "static token": STATIC,
            **{f"IMS access token {i}": t for i, t in enumerate(emu.adobe.ims.tokens)},
            **{f"access token {i}": t for i, t in enumerate(oauth.access_tokens)},
            **{f"refresh token {i}": t for i, t in enumerate(oauth.refresh_tokens)},
        }
        # What syncd signed each refresh with (current scheme): SHA256(secret + refresh + app).
        for i, refresh in enumerate(oauth.refresh_tokens):
            secrets[f"signature {i}"] = sha256_hex(SECRET + refresh + APP)

    toml = config_file(tmp_path, emu, db)
    sinks = {
        "log output": stream.getvalue(),
        "/metrics": metrics,
        "/readyz": ready,
        **every_text(db),
        "syncd status --json": await cli(capsys, "--config", str(toml), "status", "--json"),
        "syncd status": await cli(capsys, "--config", str(toml), "status"),
        "syncd runs --json": await cli(capsys, "--config", str(toml), "runs", "--json"),
        "syncd runs": await cli(capsys, "--config", str(toml), "runs"),
        "syncd events --json": await cli(
            capsys, "--config", str(toml), "events", "--json", "--limit", "500"
        ),
        "syncd events": await cli(capsys, "--config", str(toml), "events", "--limit", "500"),
    }
    assert len(secrets) >= 6, secrets
    found = leaks(secrets, sinks)
    assert found == [], "\n".join(found)
    # Not vacuous: the bodies did echo them, and their fingerprints took their place.
    log = sinks["log output"]
    for kind in ("client secret", "static token", "refresh token 0"):
        assert fingerprint(secrets[kind]) in log, kind
    stored = " ".join(v for k, v in sinks.items() if "." in k)
    assert fingerprint(emu.adobe.config.client_secret) in stored
    assert fingerprint(STATIC) in sinks["syncd runs --json"]


USER_KEY = "jane-user-api-key-0001"
CODE = "handshake-code-0001"


async def test_syncd_auth_never_shows_the_app_secret_user_key_code_or_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syncd auth` (legacy desktop flow) against a store whose refusal of the exchange quotes
    what it knows and received: the app secret, the user's key, the handshake code and both
    signatures. The error line, the debug log and the database show fingerprints only."""
    received: list[dict[str, str]] = []

    async def login(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"auth_id": "auth-1", "code": CODE})

    async def exchange(request: web.Request) -> web.Response:
        sent = await request.json()
        received.append(sent)
        details = (
            f"signature {sent['signature']} is not SHA256({SECRET} + {CODE} + ...); "
            f"the login signed {received[0]['signature']} with user key {USER_KEY}"
        )
        return web.json_response({"message": "Invalid signature", "details": details}, status=401)

    app = web.Application()
    app.add_routes([web.post("/api/oauth", login), web.post("/api/oauth/access_token", exchange)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        db = tmp_path / "s.db"
        toml = tmp_path / "syncd.toml"
        toml.write_text(
            f'[store]\npath = "{db}"\n'
            f'[[sources]]\nname = "ac"\nkind = "americommerce"\n'
            f'base_url = "http://127.0.0.1:{port}"\n'
            f'[sources.auth]\nauth_scheme = "legacy"\napp_id = "{APP}"\n'
            f'app_secret = "{SECRET}"\nscope = "{SCOPE}"\n'
        )
        monkeypatch.setenv("SYNCD_AC_USERNAME", "jane")
        monkeypatch.setenv("SYNCD_AC_USER_KEY", USER_KEY)
        argv = ["--log-level", "debug", "--log-format", "json", "--config", str(toml), "auth", "ac"]
        output = await cli(capsys, *argv)
    finally:
        await runner.cleanup()
    secrets = {
        "app secret": SECRET,
        "user key": USER_KEY,
        "auth code": CODE,
        "login signature": received[0]["signature"],
        "exchange signature": received[1]["signature"],
    }
    sinks = {"syncd auth (stdout, stderr, log)": output, **every_text(db)}
    found = leaks(secrets, sinks)
    assert found == [], "\n".join(found)
    error = output.splitlines()[-1]
    assert error.startswith("syncd: error: the store refused the desktop exchange"), error
    for secret in secrets.values():
        assert fingerprint(secret) in error, (secret, error)

"""`syncd check [SOURCE]` against the emulator: every auth kind (Adobe IMS, AmeriCommerce static
token, AmeriCommerce stored grant), one line per source, exit 0 / 1 / 2, no secret printed."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.cli import main
from syncd.commands import authorize
from syncd.commands.check import HeaderRecorder, check_sources, rate_headers
from syncd.config import Settings
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.errors import ConfigError
from syncd.http.response import Response
from syncd.store import SqliteStore
from tests.ac_support import SECRET, USER, USER_KEY, ac_config, auth_settings
from tests.clocks import FakeClock
from tests.support import ac_source, adobe_source, settings_for

STATIC = "ac-static-token-do-not-log"


def _args(source: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(source=source)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[list[MutableMapping[str, Any]]]:
    """Token log lines would go to the captured stdout: keep only what the command prints."""
    with capture_logs() as logs:
        yield logs


def _emulator(clock: FakeClock, **ac: object) -> Emulator:
    config = EmulatorConfig(
        adobe=AdobeConfig(products=25),
        americommerce=ac_config(products=15, static_tokens=(STATIC,), **ac),
    )
    return Emulator(config, clock=clock)


async def test_every_source_ok_in_one_line_each(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """IMS and a static token: a token, one product, the rate-limit headers; exit 0."""
    async with _emulator(clock) as emu:
        settings = settings_for(tmp_path / "s.db", adobe_source(emu), ac_source(emu, name="ac"))
        assert await check_sources(_args(), settings, clock=clock) == 0
        assert emu.adobe.stats.token_requests == 1
        assert emu.adobe.stats.requests == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert re.fullmatch(
        r"shop: ok: token issued \(expires in 23h59m\), 25 products, \d+ ms, "
        r"no rate-limit headers",
        out[0],
    )
    assert re.fullmatch(
        r"ac: ok: token issued \(no expiry\), 15 products, \d+ ms, "
        r"limits X-AC-Call-Limit: 1/1000",
        out[1],
    )
    assert STATIC not in "".join(out)


async def test_a_stored_americommerce_grant_is_confirmed(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app's OAuth grant: without `syncd auth` the check says to run it (exit 1); after it,
    the stored grant works (exit 0)."""
    async with _emulator(clock, scheme="legacy") as emu:
        source = ac_source(emu, name="ac", auth=auth_settings(auth_scheme="legacy"))
        settings = settings_for(tmp_path / "s.db", source)
        assert await check_sources(_args("ac"), settings, clock=clock) == 1
        assert re.fullmatch(r"ac: FAILED: .*: run 'syncd auth ac'\n", capsys.readouterr().out)
        stdin = io.StringIO(f"{USER}\n{USER_KEY}\n")
        login = argparse.Namespace(source="ac", web=False, timeout=5.0)
        code = await authorize.authorize_source(login, settings, clock=clock, stdin=stdin, env={})
        assert code == 0
        capsys.readouterr()
        assert await check_sources(_args("ac"), settings, clock=clock) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"ac: ok: token (reused|cached) \(expires in 1h\), 15 products, .*\n", out)
    assert SECRET not in out and USER_KEY not in out


async def test_a_refused_credential_fails_with_what_to_do(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong IMS secret and an unreachable store: one FAILED line each, exit 1; the good
    source between them is still checked, and the wrong secret is never printed."""
    wrong = "wrong-secret-do-not-log"
    async with _emulator(clock) as emu:
        bad = adobe_source(emu, name="bad")
        bad = bad.model_copy(
            update={"auth": bad.auth.model_copy(update={"client_secret": SecretStr(wrong)})}
        )
        down = ac_source(emu, name="down", base_url="http://127.0.0.1:9")
        settings = settings_for(tmp_path / "s.db", bad, ac_source(emu, name="ac"), down)
        assert await check_sources(_args(), settings, clock=clock) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("bad: FAILED: ") and out[0].endswith(
        "; check the source's credentials (auth.*) and the token endpoint"
    )
    assert out[1].startswith("ac: ok: ")
    assert out[2].startswith("down: FAILED: ") and out[2].endswith(
        "; check base_url (http://127.0.0.1:9/) and that the store is reachable"
    )
    assert wrong not in "\n".join(out)


async def test_only_the_named_source_is_checked(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check ac` sends nothing to the Adobe side; an unknown name is a config error."""
    async with _emulator(clock) as emu:
        settings = settings_for(tmp_path / "s.db", adobe_source(emu), ac_source(emu, name="ac"))
        assert await check_sources(_args("ac"), settings, clock=clock) == 0
        assert (emu.adobe.stats.requests, emu.adobe.stats.token_requests) == (0, 0)
        with pytest.raises(
            ConfigError, match=r"source 'nope' is not configured \(known: shop, ac\)"
        ):
            await check_sources(_args("nope"), settings, clock=clock)
    assert capsys.readouterr().out.startswith("ac: ok: ")


def _config(tmp_path: Path, emu: Emulator) -> Path:
    adobe = emu.adobe.config
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"""
[store]
path = "{tmp_path / "syncd.db"}"
[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "{emu.url}"
[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
org_id = "{adobe.org_id}"
[[sources]]
name = "ac"
kind = "americommerce"
base_url = "{emu.url}"
[sources.auth]
static_token = "{STATIC}"
"""
    )
    return path


async def test_the_cli_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through `main`: the Adobe secret unset is that source's CONFIG ERROR line (exit 2) while
    the other is checked; set, both are ok (exit 0); a usage error exits 2."""
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_"):
            monkeypatch.delenv(name)
    async with _emulator(FakeClock()) as emu:
        path = _config(tmp_path, emu)
        argv = ["--log-level", "error", "--config", str(path), "check"]
        assert await asyncio.to_thread(main, argv) == 2
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith(
            "shop: CONFIG ERROR: sources[0] (shop).auth.client_secret: is required: "
            "set SYNCD_SECRET_SHOP_CLIENT_SECRET"
        )
        assert out[1].startswith("ac: ok: ")
        monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", emu.adobe.config.client_secret)
        assert await asyncio.to_thread(main, argv) == 0
        assert [line.split(": ")[:2] for line in capsys.readouterr().out.splitlines()] == [
            ["shop", "ok"],
            ["ac", "ok"],
        ]
        with pytest.raises(SystemExit) as usage:
            await asyncio.to_thread(main, [*argv, "ac", "extra"])
        assert usage.value.code == 2


async def test_no_enabled_source_is_a_config_error(tmp_path: Path) -> None:
    """Nothing to check is not success."""
    with pytest.raises(ConfigError, match="no enabled"):
        await check_sources(_args(), Settings(), clock=FakeClock())


def test_rate_limit_headers_are_picked_by_name() -> None:
    """X-AC-Call-Limit, Retry-After and any *RateLimit* header, as sent; nothing else."""
    headers = {
        "X-AC-Call-Limit": "3/50",
        "Retry-After": "2",
        "RateLimit-Remaining": "7",
        "X-RateLimit-Limit": "100",
        "Content-Type": "application/json",
    }
    assert rate_headers(headers) == {k: v for k, v in headers.items() if k != "Content-Type"}
    recorder = HeaderRecorder()
    recorder.observe(Response(200, headers, "application/json", b"{}"))
    recorder.observe(None)  # no answer: the last one's headers stay
    assert recorder.headers["RateLimit-Remaining"] == "7"


async def test_a_source_waiting_for_reauth_is_not_sent_anything(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """needs_reauth in the store: the line says why and what to run; no request leaves."""
    async with _emulator(clock) as emu:
        settings = settings_for(tmp_path / "s.db", ac_source(emu, name="ac"))
        async with SqliteStore(tmp_path / "s.db") as store:
            await store.set_needs_reauth("ac", "the grant was revoked", clock.now())
        assert await check_sources(_args(), settings, clock=clock) == 1
        assert emu.americommerce.stats.requests == 0
    assert capsys.readouterr().out == (
        "ac: FAILED: needs re-authorisation (the grant was revoked): run 'syncd auth ac'\n"
    )


async def test_the_check_uses_the_configured_postgres_store(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    """With `[store] url` the token the check obtained is recorded in PostgreSQL, and no SQLite
    file appears at `path` (the check used to open SQLite whatever the configuration said)."""
    import psycopg

    from syncd.config import StoreSettings

    async with _emulator(clock) as emu:
        settings = settings_for(tmp_path / "s.db", adobe_source(emu)).model_copy(
            update={"store": StoreSettings(url=postgres_url)}
        )
        assert await check_sources(_args(), settings, clock=clock) == 0
    assert capsys.readouterr().out.startswith("shop: ok: token issued")
    assert not (tmp_path / "s.db").exists()
    with psycopg.connect(postgres_url) as conn:
        issued = conn.execute("SELECT count(*) FROM token_events WHERE event = 'issued'").fetchone()
    assert issued == (1,)

"""`syncd auth SOURCE`: credentials from stdin or env, exit codes, and no secret anywhere it writes."""

from __future__ import annotations

import argparse
import asyncio
import io
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from syncd.auth import TokenCache
from syncd.cli import main
from syncd.commands import authorize as commands
from syncd.config import AmeriCommerceSourceSettings, Settings, StoreSettings
from syncd.emulator import Emulator, EmulatorConfig
from syncd.errors import NeedsReauthError
from syncd.http import ClientPool
from syncd.store import SqliteStore
from tests.ac_support import (
    APP,
    FAST_HTTP,
    SECRET,
    USER,
    USER_KEY,
    AcWorld,
    ac_config,
    auth_settings,
    browse,
    free_port,
)
from tests.clocks import FakeClock, ManualClock
from tests.support import until


def _settings(db: Path, base_url: str, **auth: object) -> Settings:
    source = AmeriCommerceSourceSettings(
        name="ac",
        kind="americommerce",
        base_url=base_url,  # type: ignore[arg-type]
        auth=auth_settings(**auth),
    )
    return Settings(store=StoreSettings(path=db), sources=(source,), http=FAST_HTTP)


def _args(web: bool = False, timeout: float = 5.0) -> argparse.Namespace:
    return argparse.Namespace(source="ac", web=web, timeout=timeout)


async def test_desktop_auth_then_refresh_then_refusal_leak_nothing(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Username and key from stdin lines; the grant works, refreshes, is refused; no secret is ever
    written to stdout, stderr, a log event, an exception message or the token_events table."""
    db = tmp_path / "a.db"
    config = EmulatorConfig(americommerce=ac_config(scheme="legacy"), seed=2)
    async with Emulator(config, clock=clock) as emu:
        settings = _settings(db, emu.url, auth_scheme="legacy")
        async with SqliteStore(db) as store:
            await store.set_needs_reauth("ac", "the grant was refused", clock.now())
        with capture_logs() as logs:
            code = await commands.authorize_source(
                _args(), settings, clock=clock, stdin=io.StringIO(f"{USER}\n{USER_KEY}\n"), env={}
            )
            assert code == 0
            out, err = capsys.readouterr()
            assert out.startswith("authorised 'ac' (legacy desktop flow, desktop_signature=prose)")
            assert "refresh token sha256:" in out
            async with (
                SqliteStore(db) as store,
                ClientPool(FAST_HTTP, clock) as pool,
                aiohttp.ClientSession() as session,
            ):
                assert not (await store.source_state("ac")).needs_reauth
                world = AcWorld(emu, clock, store, pool, TokenCache(store, clock), session)
                provider = world.provider(settings.sources[0].auth)  # type: ignore[arg-type]
                client = world.client(provider)
                assert (await world.products(client)).status == 200
                clock.advance(3601)
                assert (await world.products(client)).status == 200
                secrets = world.secrets()
                emu.americommerce.revoke_tokens(refresh_tokens=True)
                clock.advance(3601)
                with pytest.raises(NeedsReauthError) as caught:
                    await world.products(client)
        assert world.refreshes() == 2
    with sqlite3.connect(db) as conn:
        events = repr(conn.execute("SELECT * FROM token_events").fetchall())
        fingerprints = [r[0] for r in conn.execute("SELECT fingerprint FROM token_events")]
    assert [f for f in fingerprints if f is not None]
    assert all(f is None or (f.startswith("sha256:") and len(f) == 19) for f in fingerprints)
    assert {"token.issued", "token.refreshed", "token.failed"} <= {e["event"] for e in logs}
    written = [repr(logs), events, out, err, str(caught.value)]
    leaks = {secret for secret in secrets for text in written if secret in text}
    assert len(secrets) >= 6 and leaks == set()


async def test_desktop_credentials_from_the_environment(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """SYNCD_AC_USERNAME and SYNCD_AC_USER_KEY stand in for the prompt; stdin is not read."""
    config = EmulatorConfig(americommerce=ac_config(scheme="legacy"), seed=2)
    async with Emulator(config, clock=clock) as emu:
        settings = _settings(tmp_path / "a.db", emu.url, auth_scheme="legacy")
        env = {"SYNCD_AC_USERNAME": USER, "SYNCD_AC_USER_KEY": USER_KEY}
        stdin = io.StringIO("not-read\n")
        code = await commands.authorize_source(_args(), settings, clock=clock, stdin=stdin, env=env)
    assert code == 0 and stdin.read() == "not-read\n"
    assert "authorised 'ac'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("lines", "env", "missing"),
    [
        ("", {}, "set SYNCD_AC_USERNAME, or pass it as line 1 of stdin"),
        ("jane\n", {}, "set SYNCD_AC_USER_KEY, or pass it as line 2 of stdin"),
        ("", {"SYNCD_AC_USERNAME": "jane"}, "set SYNCD_AC_USER_KEY, or pass it as line 1 of stdin"),
    ],
)
async def test_missing_desktop_credentials_are_a_usage_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lines: str,
    env: dict[str, str],
    missing: str,
) -> None:
    """No username or key: exit 2 with one line that says how to give it (the key is stdin's
    line 1 when the username comes from the environment); nothing is contacted."""
    settings = _settings(tmp_path / "a.db", "http://127.0.0.1:9", auth_scheme="legacy")
    code = await commands.authorize_source(_args(), settings, stdin=io.StringIO(lines), env=env)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("syncd: usage error: the desktop flow needs") and err.endswith(
        missing + "\n"
    )


async def test_current_scheme_auth_runs_the_web_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`syncd auth` on a current-scheme source prints the URL and completes on the redirect."""
    clock = ManualClock()  # its sleep never ends by itself: the listener waits for the browser
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    config = EmulatorConfig(americommerce=ac_config(), seed=2)
    async with Emulator(config, clock=clock) as emu, aiohttp.ClientSession() as browser:
        settings = _settings(tmp_path / "a.db", emu.url, redirect_uri=redirect)
        task = asyncio.create_task(commands.authorize_source(_args(), settings, clock=clock))
        printed: list[str] = []

        def url_printed() -> bool:
            printed.append(capsys.readouterr().out)
            return "/api/oauth?" in "".join(printed)

        await until(url_printed, limit=5)
        url = "".join(printed).strip().splitlines()[-1]
        assert url.startswith(f"{emu.url}/api/oauth?client_id={APP}&scope=read_catalog&")
        _, status, _ = await browse(browser, url)
        assert status == 200 and await task == 0
    assert "authorised 'ac' (current web flow)" in capsys.readouterr().out


def _write_config(tmp_path: Path, kind: str, auth: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "c.db"}"\n\n'
        f'[[sources]]\nname = "ac"\nkind = "{kind}"\nbase_url = "http://127.0.0.1:9"\n\n'
        f"[sources.auth]\n{auth}\n",
        encoding="utf-8",
    )
    return path


def test_static_token_source_is_authorised_without_a_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configured admin-console token needs no flow: exit 0, no secret printed."""
    config = _write_config(tmp_path, "americommerce", 'static_token = "console-token-xyz"')
    assert main(["--config", str(config), "auth", "ac"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("authorised 'ac' (static admin-console token")
    assert "no known expiry" in out and "console-token-xyz" not in out + err


def test_web_flow_without_a_redirect_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No browser ever comes back: exit 1 and one clear line once --timeout has passed (on the
    command's fake clock: the five minutes pass at once)."""
    clock = FakeClock()
    auth = (
        f'app_id = "{APP}"\napp_secret = "{SECRET}"\n'
        f'redirect_uri = "http://127.0.0.1:{free_port()}/cb"'
    )
    config = _write_config(tmp_path, "americommerce", auth)
    args = ["--config", str(config), "auth", "ac", "--web", "--timeout", "300"]
    assert main(args, clock=clock) == 1
    assert clock.slept == [300]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("syncd: error: no redirect reached http://127.0.0.1:")
    assert err[-1].endswith(
        " within 300s: open the authorisation URL in a browser logged in "
        "to the store's admin console, then run 'syncd auth' again"
    )
    assert SECRET not in "\n".join(err)


def test_a_non_loopback_redirect_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The web flow refuses to listen for a public redirect URL: exit 2, the field named."""
    auth = f'app_id = "{APP}"\napp_secret = "{SECRET}"\nredirect_uri = "https://app.example.com/cb"'
    config = _write_config(tmp_path, "americommerce", auth)
    assert main(["--config", str(config), "auth", "ac"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("syncd: config error: auth.redirect_url: 'https://app.example.com/cb'")


def test_adobe_sources_have_no_auth_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`syncd auth` on an IMS source is a usage error (2), not a crash."""
    auth = 'client_id = "c"\nclient_secret = "s"\norg_id = "o@AdobeOrg"'
    config = _write_config(tmp_path, "adobe_commerce", auth)
    assert main(["--config", str(config), "auth", "ac"]) == 2
    assert "only americommerce sources have an authorisation step" in capsys.readouterr().err


def test_unknown_source_and_bad_timeout_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unconfigured source name or a non-positive --timeout: exit 2 with the reason."""
    config = _write_config(tmp_path, "americommerce", 'static_token = "t"')
    assert main(["--config", str(config), "auth", "nope"]) == 2
    assert "source 'nope' is not configured (known: ac)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "auth", "ac", "--timeout", "0"])
    assert exited.value.code == 2
    assert "'0' is not a positive number of seconds" in capsys.readouterr().err


def test_both_spellings_of_one_setting_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """app_id and client_id together: one config line naming both."""
    config = _write_config(
        tmp_path, "americommerce", f'app_id = "{APP}"\nclient_id = "x"\napp_secret = "s"'
    )
    assert main(["--config", str(config), "check-config"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "syncd: config error: sources[0] (ac).auth: app_id and client_id are two names of one "
        "setting: give only one"
    )


def test_current_names_are_aliases_and_the_redirect_is_kept_verbatim() -> None:
    """client_id/redirect_uri fill app_id/redirect_url; the URL is not normalised (it is signed)."""
    settings = auth_settings(client_id="c-9", redirect_uri="http://LocalHost:8765/CallBack")
    assert (settings.app_id, settings.redirect_url) == ("c-9", "http://LocalHost:8765/CallBack")
    assert (settings.auth_scheme, settings.scope, settings.desktop_signature) == (
        "current",
        "read_catalog",
        "prose",
    )


class _Terminal(io.StringIO):
    """Stdin as an operator's terminal: `isatty()` is true, reads give what was typed."""

    def isatty(self) -> bool:
        return True


def _legacy_config(tmp_path: Path) -> Path:
    auth = f'auth_scheme = "legacy"\napp_id = "{APP}"\napp_secret = "{SECRET}"'
    return _write_config(tmp_path, "americommerce", auth)


def test_ctrl_d_at_the_key_prompt_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """EOF at the hidden key prompt (getpass raises EOFError): exit 2 and one line, no traceback."""
    prompts: list[str] = []

    def eof(prompt: str, stream: object = None) -> str:
        prompts.append(prompt)
        raise EOFError

    monkeypatch.setattr("getpass.getpass", eof)
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    monkeypatch.setenv("SYNCD_AC_USERNAME", USER)
    assert main(["--config", str(_legacy_config(tmp_path)), "auth", "ac"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert prompts == ["User API key (input hidden): "]
    assert lines == [
        "",  # the line the prompt was on, ended
        "syncd: usage error: the desktop flow needs the user's API key: type it at the prompt, "
        "set SYNCD_AC_USER_KEY, or pass it as line 1 of stdin",  # the username came from env
    ]


def test_ctrl_d_at_the_username_prompt_asks_nothing_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """EOF at the username prompt: exit 2 naming the username, and the key is never prompted for."""

    def unexpected(prompt: str, stream: object = None) -> str:
        raise AssertionError("prompted for the key after the username was refused")

    monkeypatch.setattr("getpass.getpass", unexpected)
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    monkeypatch.delenv("SYNCD_AC_USERNAME", raising=False)
    assert main(["--config", str(_legacy_config(tmp_path)), "auth", "ac"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("AmeriCommerce username: \n")
    assert err.splitlines()[-1].startswith("syncd: usage error: the desktop flow needs a username")

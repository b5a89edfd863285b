"""Secrets are needed where they are used: read-only commands run without any, `sync SOURCE` needs
only that source's, `run` and `check-config` need every enabled source's and refuse the same
things through one validation path (no source, a database that cannot be written)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.config import load_settings
from syncd.config.readiness import MissingSecret, missing_secrets, run_problems
from syncd.emulator import AmeriCommerceConfig, Emulator, EmulatorConfig
from syncd.errors import ConfigError
from tests.support import query

TWO_SOURCES = """
[store]
path = "{db}"
[http]
max_attempts = 2
backoff_base = 0.001
backoff_cap = 0.01
[[sources]]
name = "adobe"
kind = "adobe_commerce"
base_url = "{url}"
[sources.auth]
token_url = "{url}/ims/token/v3"
client_id = "syncd-emulator-client"
org_id = "EMULATOR0000@AdobeOrg"
[[sources]]
name = "ac"
kind = "americommerce"
base_url = "{url}"
page_size = 10
[sources.auth]
{ac_auth}
"""
ADOBE_MISSING = (
    "sources[0] (adobe).auth.client_secret: is required: set SYNCD_SECRET_ADOBE_CLIENT_SECRET, "
    "a file adobe.client_secret in the secrets directory, or auth.client_secret in the config file"
)
AC_TOKEN = "ac-static-token-do-not-log"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SYNCD_* or systemd variables must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


def write(tmp_path: Path, url: str = "http://127.0.0.1:9", ac_auth: str = "") -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        TWO_SOURCES.format(
            db=tmp_path / "syncd.db", url=url, ac_auth=ac_auth or 'app_id = "syncd-emulator-app"'
        )
    )
    return path


@pytest.mark.parametrize(
    "args", [("status",), ("status", "--json"), ("runs",), ("events", "ac"), ("check-config",)]
)
def test_read_only_commands_need_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    """No secret of either source is set: status, runs and events answer (exit 0) from the
    store; check-config, which answers for `run`, names both missing secrets (exit 2)."""
    code = main(["--config", str(write(tmp_path)), *args])
    err = capsys.readouterr().err
    if args[0] == "check-config":
        assert code == 2
        assert err.splitlines() == [
            f"syncd: config error: {ADOBE_MISSING}",
            "syncd: config error: sources[1] (ac).auth.app_secret: is required: set "
            "SYNCD_SECRET_AC_APP_SECRET, a file ac.app_secret in the secrets directory, or "
            "auth.app_secret in the config file",
        ]
    else:
        assert (code, err) == (0, "")


def test_healthcheck_needs_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """healthcheck asks the listener (nothing listens here: exit 1), never for a secret."""
    path = write(tmp_path)
    path.write_text("[health]\nenabled = true\nport = 9\n" + path.read_text())
    assert main(["--config", str(path), "healthcheck", "--timeout", "2"]) == 1
    assert "secret" not in capsys.readouterr().err


def test_the_default_loader_still_needs_every_secret(tmp_path: Path) -> None:
    """load_settings without `secrets_of` is as strict as before; with it, only those sources'."""
    path = write(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0] == ADOBE_MISSING and len(caught.value.problems) == 2
    with pytest.raises(ConfigError) as caught:
        load_settings(path, secrets_of=("adobe",))
    assert caught.value.problems == [ADOBE_MISSING]
    settings = load_settings(path, secrets_of=())
    assert missing_secrets(settings.sources[0]) == [ADOBE_MISSING]


def test_a_missing_secret_cannot_be_used_or_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading an unset secret is the config error line, never a value; the other source's
    secret is still known to the CLI's scrubber."""
    monkeypatch.setenv("SYNCD_SECRET_AC_STATIC_TOKEN", AC_TOKEN)
    settings = load_settings(write(tmp_path, ac_auth="# token from env"), secrets_of=())
    secret = settings.sources[0].auth.client_secret  # type: ignore[union-attr]
    assert isinstance(secret, MissingSecret) and repr(secret) == "MissingSecret()"
    with pytest.raises(ConfigError, match="SYNCD_SECRET_ADOBE_CLIENT_SECRET"):
        secret.get_secret_value()
    assert settings.secret_values() == [AC_TOKEN]


def test_other_field_errors_are_reported_with_the_needed_secrets(tmp_path: Path) -> None:
    """A bad key and an unset secret: both lines, the secret's only where it is needed."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace('name = "ac"', 'name = "ac"\nmax_concurrency = 0', 1))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, secrets_of=())
    assert caught.value.problems == [
        "sources[1] (ac).max_concurrency: 0 is invalid: Input should be greater than or equal to 1"
    ]
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0] == ADOBE_MISSING and len(caught.value.problems) == 3


def test_a_disabled_source_needs_no_secret_to_run(tmp_path: Path) -> None:
    """`run` syncs enabled sources only, so only theirs are required."""
    path = write(tmp_path, ac_auth=f'static_token = "{AC_TOKEN}"')
    path.write_text(path.read_text().replace('name = "adobe"', 'name = "adobe"\nenabled = false'))
    assert run_problems(load_settings(path, secrets_of=())) == []
    assert main(["--config", str(path), "check-config"]) == 0


async def test_sync_of_one_source_needs_only_its_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Adobe source's secret is unset: the AmeriCommerce source syncs (exit 0) and the Adobe
    one is refused before any request (exit 2, the line naming its variable)."""
    config = EmulatorConfig(
        americommerce=AmeriCommerceConfig(products=20, static_tokens=(AC_TOKEN,))
    )
    async with Emulator(config) as emu:
        path = write(tmp_path, emu.url, f'static_token = "{AC_TOKEN}"')
        assert await asyncio.to_thread(main, ["--config", str(path), "sync", "ac"]) == 0
        assert await asyncio.to_thread(main, ["--config", str(path), "sync", "adobe"]) == 2
        assert emu.adobe.stats.token_requests == 0
    assert capsys.readouterr().err.endswith(f"syncd: config error: {ADOBE_MISSING}\n")
    assert query(tmp_path / "syncd.db", "SELECT COUNT(*) FROM products") == [(20,)]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda text: text.split("[[sources]]")[0],
            "sources: at least one [[sources]] entry is required",
        ),
        (
            lambda text: text.replace("syncd.db", "blocker/sub/syncd.db"),
            "store.path: '{tmp}/blocker/sub/syncd.db' cannot be created: '{tmp}/blocker' is a "
            "file, not a directory",
        ),
    ],
)
def test_check_config_refuses_what_run_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object, problem: str
) -> None:
    """No source, or a database directory that cannot be created: check-config and run exit 2
    with the same line (one validation path), and run starts nothing."""
    (tmp_path / "blocker").write_text("a file where a directory should be")
    path = write(tmp_path, ac_auth=f'static_token = "{AC_TOKEN}"')
    text = path.read_text().replace('org_id = "', 'client_secret = "s"\norg_id = "')
    path.write_text(edit(text))  # type: ignore[operator]
    expected = f"syncd: config error: {problem.format(tmp=tmp_path)}\n"
    assert main(["--config", str(path), "check-config"]) == 2
    assert capsys.readouterr().err == expected
    assert main(["--config", str(path), "run"]) == 2
    assert capsys.readouterr().err == expected
    assert not (tmp_path / "syncd.db").exists()


def test_a_read_only_database_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory this user cannot write: refused before run starts."""
    path = write(tmp_path, ac_auth=f'static_token = "{AC_TOKEN}"')
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:
        # Root may write any directory (CI runs as root): answer as the kernel would for a user.
        real = os.access
        monkeypatch.setattr(
            "syncd.config.readiness.os.access",
            lambda target, mode: real(target, mode) and Path(target) != locked,
        )
    text = path.read_text().replace('org_id = "', 'client_secret = "s"\norg_id = "')
    path.write_text(text.replace(str(tmp_path / "syncd.db"), str(locked / "x.db")))
    problems = run_problems(load_settings(path))
    assert problems == [
        f"store.path: '{locked / 'x.db'}' cannot be created: the directory '{locked}' is not "
        "writable by this user"
    ]

"""`syncd emulator`: it prints every credential it accepts, and `--write-config FILE` writes a
config with one source per platform that check-config, check and sync accept as it is."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tomllib
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.commands.emulator import STATIC_TOKEN, serve_emulator
from syncd.emulator import AdobeConfig, AmeriCommerceConfig
from tests.support import query, until


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's SYNCD_* variables must not change the config under test."""
    for name in list(os.environ):
        if name.upper().startswith("SYNCD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


async def test_the_written_config_checks_and_syncs_every_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Serve, write the config, then through the CLI: check-config, check and a sync of each
    source against the running emulator all exit 0 and store every product."""
    path = tmp_path / "emulator.toml"
    out = io.StringIO()
    task = asyncio.create_task(serve_emulator(0, 40, None, config_file=path, out=out))
    try:
        await until(lambda: path.exists() and "config written" in out.getvalue())
        config = tomllib.loads(path.read_text())
        assert [(s["name"], s["kind"]) for s in config["sources"]] == [
            ("emulator-adobe", "adobe_commerce"),
            ("emulator-americommerce", "americommerce"),
        ]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        base = ["--log-level", "error", "--config", str(path)]
        assert await asyncio.to_thread(main, [*base, "check-config"]) == 0
        assert await asyncio.to_thread(main, [*base, "check"]) == 0
        checked = capsys.readouterr().out.splitlines()[-2:]
        assert [line.split(": ")[:2] for line in checked] == [
            ["emulator-adobe", "ok"],
            ["emulator-americommerce", "ok"],
        ]
        for source in ("emulator-adobe", "emulator-americommerce"):
            assert await asyncio.to_thread(main, [*base, "sync", source]) == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    db = Path(config["store"]["path"])
    assert db.parent == tmp_path
    counts = query(db, "SELECT source, COUNT(*) FROM products GROUP BY source ORDER BY source")
    assert counts == [("emulator-adobe", 40), ("emulator-americommerce", 40)]


async def test_every_accepted_credential_is_printed() -> None:
    """Each value the emulator accepts as a credential appears in what it prints."""
    out = io.StringIO()
    task = asyncio.create_task(serve_emulator(0, 5, None, out=out))
    try:
        await until(lambda: "AmeriCommerce" in out.getvalue())
        await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    text = out.getvalue()
    adobe, ac = AdobeConfig(), AmeriCommerceConfig()
    expected = [adobe.client_id, adobe.client_secret, adobe.org_id, adobe.required_scope]
    expected += [ac.app_id, ac.app_secret, ac.scope, STATIC_TOKEN, "/ims/token/v3"]
    expected += [f"{user} / key {key}" for user, key in ac.users.items()]
    assert [value for value in expected if value not in text] == []
    assert "lifetime" not in text


def test_a_bad_write_config_path_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory given as the file: exit 2 before anything listens."""
    with pytest.raises(SystemExit) as caught:
        main(["emulator", "--write-config", str(tmp_path)])
    assert caught.value.code == 2
    assert "is a directory: expected a file path" in capsys.readouterr().err

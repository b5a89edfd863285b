"""`syncd status` and `syncd replicas` on PostgreSQL: each source's owner and lease, and the live
replicas with what each holds (`--json` for both)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_leases import PostgresLeases

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write_config(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"""
{store}

[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "http://127.0.0.1:9"
schedule = "15m"

[sources.auth]
token_url = "http://127.0.0.1:9/token"
client_id = "id"
org_id = "org"
"""
    )
    return path


async def hold(url: str) -> None:
    async with PostgresStore(url) as store:
        leases = PostgresLeases(store, 30)
        await leases.heartbeat("hostA:11:20260101T000000Z", "hostA", 11, T0)
        await leases.heartbeat("hostB:22:20260101T000000Z", "hostB", 22, T0 + timedelta(1))
        await leases.ensure({"shop": (await leases.now() - timedelta(seconds=1), None)})
        await leases.claim_due(["shop"], "hostA:11:20260101T000000Z", 4)


@pytest.fixture
def config(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", "s3cret-value")
    asyncio.run(hold(postgres_url))
    return write_config(tmp_path, f'[store]\nurl = "{postgres_url}"')


def test_status_shows_each_sources_owner_and_lease(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "status", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["sources"]
    lease = row["lease"]
    assert (lease["owner"], lease["epoch"], lease["live"]) == ("hostA:11:20260101T000000Z", 1, True)
    assert lease["expires_at"] is not None
    assert main(["--config", str(config), "status"]) == 0
    assert "owner: hostA:11:20260101T000000Z (lease epoch 1 until" in capsys.readouterr().out


def test_replicas_lists_the_live_ones_and_what_each_holds(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "replicas", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["replicas"]
    assert [(r["host"], r["pid"], r["sources_held"]) for r in listed] == [
        ("hostA", 11, 1),
        ("hostB", 22, 0),
    ]
    assert main(["--config", str(config), "replicas"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "1 sources held" in lines[0] and "host hostB pid 22" in lines[1]


def test_replicas_on_sqlite_says_there_are_none_to_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", "s3cret-value")
    config = write_config(tmp_path, f'[store]\npath = "{tmp_path / "s.db"}"')
    assert main(["--config", str(config), "replicas"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "PostgreSQL only" in err

"""Magento beyond ACCS end to end: every Adobe auth kind, with and without a store code, against
the emulator on loopback (real engine, client, token cache and store)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.clock import Clock
from syncd.config import AdobeCommerceSourceSettings
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.logging import configure_logging
from syncd.runtime import Runtime
from syncd.sync import SyncResult
from tests.clocks import FakeClock
from tests.support import settings_for, stored_products

StartEmu = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emu() -> AsyncIterator[StartEmu]:
    """Start emulators (the real clock unless given one) that are closed at teardown."""
    emulators: list[Emulator] = []

    async def start(clock: Clock | None = None, **adobe: Any) -> Emulator:
        emu = Emulator(EmulatorConfig(adobe=AdobeConfig(**adobe), seed=5), clock)
        await emu.start()
        emulators.append(emu)
        return emu

    yield start
    for emu in emulators:
        await emu.close()


def auth_for(emu: Emulator, kind: str, **overrides: Any) -> dict[str, Any]:
    """The emulator's credentials as an `auth` table of `kind`."""
    cfg = emu.adobe.config
    tables: dict[str, dict[str, Any]] = {
        "ims": {
            "token_url": emu.ims_token_url,
            "client_id": cfg.client_id,
            "client_secret": cfg.client_secret,
            "org_id": cfg.org_id,
        },
        "bearer": {"kind": "bearer", "access_token": cfg.integration_access_token},
        "oauth1": {
            "kind": "oauth1",
            "consumer_key": cfg.integration_consumer_key,
            "consumer_secret": cfg.integration_consumer_secret,
            "access_token": cfg.integration_access_token,
            "access_token_secret": cfg.integration_access_token_secret,
        },
    }
    return {**tables[kind], **overrides}


def source_for(emu: Emulator, auth: dict[str, Any], **fields: Any) -> AdobeCommerceSourceSettings:
    """An Adobe source named `shop` aimed at `emu`."""
    return AdobeCommerceSourceSettings.model_validate(
        {
            "name": "shop",
            "kind": "adobe_commerce",
            "base_url": emu.url,
            "page_size": 10,
            "auth": auth,
            **fields,
        }
    )


async def sync(
    db: Path, source: AdobeCommerceSourceSettings, kind: str | None = None
) -> SyncResult:
    async with Runtime(settings_for(db, source)) as runtime:
        return await runtime.sync("shop", kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("store_code", [None, "default"])
@pytest.mark.parametrize("kind", ["ims", "bearer", "oauth1"])
async def test_full_then_incremental_sync_with_each_auth_kind(
    tmp_path: Path, start_emu: StartEmu, kind: str, store_code: str | None
) -> None:
    """Each kind syncs the whole catalog, then only what changed, on the store code's path."""
    emu = await start_emu(products=37)
    db = tmp_path / "s.db"
    source = source_for(emu, auth_for(emu, kind), store_code=store_code)
    full = await sync(db, source)
    assert full.ok, full.error
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    sku = next(emu.adobe.catalog.skus())
    emu.adobe.catalog.update(sku, name="Renamed by the store")
    incremental = await sync(db, source, "incremental")
    assert incremental.ok and incremental.kind == "incremental", incremental.error
    assert stored_products(db, "shop")[sku]["name"] == "Renamed by the store"
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    path = f"/rest/{store_code}/V1/products" if store_code else "/rest/V1/products"
    paths = {record.path for record in emu.adobe.stats.log}
    assert paths == ({"/ims/token/v3", path} if kind == "ims" else {path})
    assert emu.adobe.stats.unauthorized == 0
    requests = full.totals.requests + incremental.totals.requests
    assert emu.adobe.integration.signed == (requests if kind == "oauth1" else 0)


async def test_ims_for_a_paas_store_asks_no_accs_scope(tmp_path: Path, start_emu: StartEmu) -> None:
    """flavour = "paas" with the default scopes leaves commerce.accs out of the grant."""
    emu = await start_emu(products=5, required_scope="openid")
    result = await sync(tmp_path / "s.db", source_for(emu, auth_for(emu, "ims", flavour="paas")))
    assert result.ok, result.error
    (token,) = emu.adobe.issued_tokens.values()
    assert "commerce.accs" not in token.scopes and "openid" in token.scopes


@pytest.mark.parametrize(
    ("kind", "overrides", "words"),
    [
        ("bearer", {"access_token": "wrong-token-0123456789"}, "standalone Bearer tokens"),
        (
            "oauth1",
            {"consumer_secret": "wrong-secret-0123456789"},
            "The signature is invalid. Verify and try again.",
        ),
        (
            "oauth1",
            {"access_token_secret": "wrong-secret-0123456789"},
            "check auth.consumer_key, consumer_secret, access_token and access_token_secret",
        ),
    ],
    ids=["bearer", "consumer-secret", "token-secret"],
)
async def test_refused_integration_credentials_fail_the_run_in_one_line(
    tmp_path: Path, start_emu: StartEmu, kind: str, overrides: dict[str, str], words: str
) -> None:
    """A refused credential fails the run with the store's words and what to check; neither the
    error nor a log line holds a secret."""
    emu = await start_emu(products=5)
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    result = await sync(tmp_path / "s.db", source_for(emu, auth_for(emu, kind, **overrides)))
    assert not result.ok
    assert result.error is not None and "\n" not in result.error
    assert words in result.error and "401" in result.error
    cfg = emu.adobe.config
    secrets = [
        *overrides.values(),
        cfg.integration_access_token,
        cfg.integration_consumer_secret,
        cfg.integration_access_token_secret,
    ]
    for secret in secrets:
        assert secret not in result.error
        assert secret not in stream.getvalue()
    assert stored_products(tmp_path / "s.db", "shop") == {}


async def test_store_without_the_store_code_fails_saying_so(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """An unknown store code is Magento's unrouted 404: the run fails naming the path."""
    emu = await start_emu(products=5)
    source = source_for(emu, auth_for(emu, "bearer"), store_code="fr")
    result = await sync(tmp_path / "s.db", source)
    assert not result.ok
    assert result.error is not None
    assert "/rest/fr/V1/products" in result.error and "404" in result.error
    assert "Request does not match any route." in result.error


async def test_each_attempt_is_signed_afresh(tmp_path: Path, start_emu: StartEmu) -> None:
    """A retried request gets a new nonce (a replayed one would be refused), so a 503 costs one
    retry and nothing else."""
    emu = await start_emu(products=25)
    emu.adobe.faults.add(Fault("status", status=503, after=1))
    result = await sync(tmp_path / "s.db", source_for(emu, auth_for(emu, "oauth1")))
    assert result.ok, result.error
    assert result.totals.retries == 1
    assert emu.adobe.stats.unauthorized == 0
    assert len(emu.adobe.integration.nonces) == emu.adobe.integration.signed


@pytest.mark.parametrize("kind", ["bearer", "oauth1"])
async def test_the_database_holds_no_integration_secret(
    tmp_path: Path, start_emu: StartEmu, kind: str
) -> None:
    """The token cache persists a fingerprint of an integration's token, never the token."""
    emu = await start_emu(products=3)
    db = tmp_path / "s.db"
    assert (await sync(db, source_for(emu, auth_for(emu, kind)))).ok
    cfg = emu.adobe.config
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert "sha256:" in dump  # the fingerprint is there
    for secret in (
        cfg.integration_access_token,
        cfg.integration_consumer_secret,
        cfg.integration_access_token_secret,
    ):
        assert secret not in dump


async def test_a_clock_far_ahead_of_the_stores_is_named(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """Signed with a clock 11 minutes ahead, the request is Magento's timestamp 400: the run
    fails saying which clock to fix."""
    store_time = FakeClock()
    emu = await start_emu(clock=store_time, products=3)
    ahead = FakeClock(store_time.now() + timedelta(minutes=11))
    settings = settings_for(tmp_path / "s.db", source_for(emu, auth_for(emu, "oauth1")))
    async with Runtime(settings, clock=ahead) as runtime:
        result = await runtime.sync("shop", "full")
    assert not result.ok and result.error is not None
    assert "Incorrect timestamp value in the oauth_timestamp parameter" in result.error
    assert "clock is more than 10 minutes ahead" in result.error

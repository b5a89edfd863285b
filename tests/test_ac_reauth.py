"""A rejected AmeriCommerce refresh parks that source alone; the daemon keeps syncing the others.

The real AmeriCommerce adapter is written elsewhere, so a tiny in-test source reads one page through
the real client, provider, token cache, engine and daemon.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

import syncd.daemon
from syncd.auth import TokenCache
from syncd.auth.ac_bootstrap import install_grant
from syncd.auth.americommerce import AmeriCommerceTokenProvider
from syncd.clock import Clock, FakeClock
from syncd.commands import status as commands
from syncd.config import AmeriCommerceSourceSettings, SourceSettings
from syncd.daemon import Daemon, Runtime
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.http import ClientPool, RequestStats, SourceAuth, SourceClient
from syncd.sources import Page, Source
from syncd.sources.base import Cursor, make_record
from tests.ac_support import ac_config, auth_settings, hand_grant
from tests.support import adobe_source, settings_for


class TinyAcSource:
    """Just enough of an AmeriCommerce adapter: the first page of products, through the real client."""

    def __init__(self, settings: AmeriCommerceSourceSettings, client: SourceClient) -> None:
        self._settings = settings
        self._client = client

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def page_size(self) -> int:
        return self._settings.page_size

    async def _page(self, stats: RequestStats) -> Page:
        answer = await self._client.get_json(
            f"{self._settings.base_url}api/v1/products",
            {"count": str(self.page_size)},
            stats=stats,
            headers={"Cache-Control": "no-cache"},
        )
        records = [
            make_record(
                p,
                sku=p["item_number"],
                id=p["id"],
                name=p["item_name"],
                price=p["price"],
                status=None,
                type_id=None,
                updated_at=p["updated_at"],
            )
            for p in answer.data["products"]
        ]
        return Page(1, records, answer.data["total_count"], 1)

    async def full_pages(
        self, stats: RequestStats, skip: frozenset[int] = frozenset()
    ) -> AsyncIterator[Page]:
        yield await self._page(stats)

    async def changed_pages(self, stats: RequestStats, cursor: Cursor) -> AsyncIterator[Page]:
        yield await self._page(stats)


@pytest.fixture
def tiny_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon builds TinyAcSource for americommerce sources, the real adapters otherwise."""
    real = syncd.daemon.build_source

    def build(
        settings: SourceSettings, pool: ClientPool, cache: TokenCache, clock: Clock
    ) -> Source:
        if not isinstance(settings, AmeriCommerceSourceSettings):
            return real(settings, pool, cache, clock)
        provider = AmeriCommerceTokenProvider(
            settings.auth, str(settings.base_url), pool, clock, source=settings.name
        )
        client = pool.client(
            name=settings.name,
            max_concurrency=4,
            request_timeout=10,
            connect_timeout=5,
            auth=SourceAuth(provider, cache, settings.name),
        )
        return TinyAcSource(settings, client)

    monkeypatch.setattr(syncd.daemon, "build_source", build)


async def test_a_rejected_refresh_parks_only_that_source(
    tmp_path: Path, clock: FakeClock, tiny_sources: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused refresh → run failed, source flagged and then skipped; the Adobe source keeps syncing;
    status tells the operator what to run; a new grant brings the source back."""
    config = EmulatorConfig(adobe=AdobeConfig(products=30), americommerce=ac_config(), seed=4)
    async with Emulator(config, clock=clock) as emu, aiohttp.ClientSession() as browser:
        ac = AmeriCommerceSourceSettings(
            name="ac",
            kind="americommerce",
            base_url=emu.url,
            page_size=20,
            auth=auth_settings(),  # type: ignore[arg-type]
        )
        settings = settings_for(tmp_path / "d.db", adobe_source(emu, name="shop"), ac)  # type: ignore[arg-type]
        async with Runtime(settings, clock=clock) as runtime:
            provider = AmeriCommerceTokenProvider(
                ac.auth, str(ac.base_url), runtime.pool, clock, source="ac"
            )
            grant = await hand_grant(emu, browser, clock)
            await install_grant(runtime.cache, runtime.store, provider, grant, "ac", clock.now())
            daemon = Daemon(runtime, handle_signals=False)
            first = await daemon.run_once("ac")
            assert first is not None and first.ok and first.totals.items_seen == 20

            emu.americommerce.revoke_tokens(refresh_tokens=True)
            clock.advance(3601)
            with capture_logs() as logs:
                failed = await daemon.run_once("ac")
                skipped = await daemon.run_once("ac")
                shop = await daemon.run_once("shop")
            assert failed is not None and failed.status == "failed"
            assert failed.error is not None and failed.error.endswith("run 'syncd auth ac'")
            assert skipped is None
            assert shop is not None and shop.ok and shop.totals.items_seen == 30
            assert (await runtime.store.source_state("ac")).needs_reauth
            assert not (await runtime.store.source_state("shop")).needs_reauth
            parked = [e for e in logs if e["event"] == "source.needs_reauth"]
            # The engine binds `source` as a contextvar; the action names it.
            assert [e["action"] for e in parked] == ["run 'syncd auth ac'"]
            skips = [e for e in logs if e["event"] == "sync.skipped"]
            assert [(e["source"], e["reason"]) for e in skips] == [("ac", "needs_reauth")]
            assert emu.americommerce.stats.requests_to("/api/oauth/refresh")[-1].status == 401

            assert await commands.show_status(argparse.Namespace(json=False), settings) == 0
            out = capsys.readouterr().out
            ac_block = out[out.index("ac (americommerce)") :]
            assert "ACTION NEEDED: run 'syncd auth ac'" in ac_block
            assert "Invalid refresh_token" in ac_block
            assert "ACTION NEEDED" not in out[: out.index("ac (americommerce)")]
            assert await commands.show_status(argparse.Namespace(json=True), settings) == 0
            rows = {row["source"]: row for row in _status_json(capsys)["sources"]}
            assert (rows["ac"]["needs_reauth"], rows["ac"]["action"]) == (
                True,
                "run 'syncd auth ac'",
            )
            assert (rows["shop"]["needs_reauth"], rows["shop"]["action"]) == (False, None)

            secrets = {
                *emu.americommerce.oauth.access_tokens,
                *emu.americommerce.oauth.refresh_tokens,
            }
            assert not any(s in repr(logs) or s in out for s in secrets)

            # The operator runs `syncd auth ac`: the next scheduled run goes through again.
            renewed = await hand_grant(emu, browser, clock)
            await install_grant(runtime.cache, runtime.store, provider, renewed, "ac", clock.now())
            healed = await daemon.run_once("ac")
            assert healed is not None and healed.ok


def _status_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data

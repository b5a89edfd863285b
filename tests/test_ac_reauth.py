"""A rejected AmeriCommerce refresh parks that source alone; the daemon keeps syncing the others.

Everything is the real thing: the AmeriCommerce adapter, client, provider, token cache, engine,
daemon and `syncd status`, against the emulator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from syncd.auth.americommerce.bootstrap import install_grant
from syncd.auth.americommerce.refresh import AmeriCommerceTokenProvider
from syncd.commands import status as commands
from syncd.config import AmeriCommerceSourceSettings
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.runtime import Runtime
from tests.ac_support import ac_config, auth_settings, hand_grant
from tests.clocks import FakeClock
from tests.support import adobe_source, settings_for


async def test_a_rejected_refresh_parks_only_that_source(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused refresh → run failed, source flagged and then skipped; the Adobe source keeps syncing;
    status tells the operator what to run; a new grant brings the source back."""
    config = EmulatorConfig(adobe=AdobeConfig(products=30), americommerce=ac_config(), seed=4)
    async with Emulator(config, clock=clock) as emu, aiohttp.ClientSession() as browser:
        ac = AmeriCommerceSourceSettings(
            name="ac",
            kind="americommerce",
            base_url=emu.url,  # type: ignore[arg-type]
            page_size=20,
            auth=auth_settings(),
        )
        settings = settings_for(tmp_path / "d.db", adobe_source(emu, name="shop"), ac)
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

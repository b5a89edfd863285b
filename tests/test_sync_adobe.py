"""Adobe Commerce end to end: the real engine, client and store against the emulator on loopback;
what both platforms share is in test_sync_platforms.py."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.logging import configure_logging
from syncd.redaction import fingerprint
from syncd.runtime import Runtime
from syncd.sources.adobe_commerce import AdobeCommerceSource, magento_message
from syncd.sync import SyncResult
from tests.clocks import FakeClock
from tests.support import adobe_source, query, settings_for, stored_products, until

StartEmu = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emu() -> AsyncIterator[StartEmu]:
    """Start emulators (real clock) that are closed at teardown."""
    emulators: list[Emulator] = []

    async def start(**adobe: object) -> Emulator:
        emu = Emulator(EmulatorConfig(adobe=AdobeConfig(**adobe), seed=3))  # type: ignore[arg-type]
        await emu.start()
        emulators.append(emu)
        return emu

    yield start
    for emu in emulators:
        await emu.close()


async def sync(db: Path, emu: Emulator, kind: str | None = None, **source: object) -> SyncResult:
    async with Runtime(settings_for(db, adobe_source(emu, **source))) as runtime:  # type: ignore[arg-type]
        return await runtime.sync("shop", kind)  # type: ignore[arg-type]


async def test_columns_are_extracted(tmp_path: Path, start_emu: StartEmu) -> None:
    """The queryable columns mirror the payload."""
    emu = await start_emu(products=5)
    await sync(tmp_path / "s.db", emu)
    sku = next(iter(emu.adobe.catalog.skus()))
    item = emu.adobe.catalog.get(sku)
    row = query(
        tmp_path / "s.db",
        "SELECT id, name, price, status, type_id, updated_at FROM products WHERE sku=?",
        sku,
    )
    assert row == [
        (
            item["id"],
            item["name"],
            item["price"],
            item["status"],
            item["type_id"],
            # Magento's 'YYYY-MM-DD HH:MM:SS' (UTC), stored in syncd's one time form
            item["updated_at"].replace(" ", "T") + ".000Z",
        )
    ]


async def test_second_full_sync_rewrites_nothing(tmp_path: Path, start_emu: StartEmu) -> None:
    """Re-reading an unchanged catalog counts everything unchanged."""
    emu = await start_emu(products=50)
    await sync(tmp_path / "s.db", emu)
    again = await sync(tmp_path / "s.db", emu, "full")
    assert (
        again.totals.items_unchanged,
        again.totals.items_updated,
        again.totals.items_created,
    ) == (50, 0, 0)


@pytest.mark.parametrize("past_end", ["empty", "repeat"])
async def test_correct_against_both_past_the_end_behaviours(
    tmp_path: Path, start_emu: StartEmu, past_end: str
) -> None:
    """Magento 2.3 (repeats the last page) and 2.4 (empty page) give the same, exact result."""
    emu = await start_emu(products=95, past_end=past_end)
    result = await sync(tmp_path / "s.db", emu)
    assert result.totals.items_seen == 95
    assert stored_products(tmp_path / "s.db", "shop") == emu.adobe.catalog.snapshot()
    pages = sorted(
        int(r.query["searchCriteria[currentPage]"])
        for r in emu.adobe.stats.requests_to("/rest/V1/products")
        if r.query["searchCriteria[pageSize]"] == "10"
    )
    assert pages == list(range(1, 11))  # never past the last page


async def test_capped_page_size_is_a_clear_error(tmp_path: Path, start_emu: StartEmu) -> None:
    """A store with input limits refuses pageSize above 300: the run fails saying what to change."""
    emu = await start_emu(products=20, page_size_cap=300)
    result = await sync(tmp_path / "s.db", emu, page_size=500)
    assert result.status == "failed"
    assert "page_size=500" in (result.error or "") and "300" in (result.error or "")


async def test_restart_reuses_the_persisted_token(tmp_path: Path, start_emu: StartEmu) -> None:
    """A second process on the same database asks IMS for no new token."""
    emu = await start_emu(products=30)
    await sync(tmp_path / "s.db", emu)
    await sync(tmp_path / "s.db", emu, "full")
    assert emu.adobe.stats.token_requests == 1
    events = [r[0] for r in query(tmp_path / "s.db", "SELECT event FROM token_events ORDER BY id")]
    assert events == ["issued", "reused"]


async def test_token_revoked_mid_run_refreshes_once(tmp_path: Path, start_emu: StartEmu) -> None:
    """A 401 for a revoked token costs one new token, and the run still succeeds."""
    emu = await start_emu(products=200, latency=0.002)
    db = tmp_path / "s.db"

    async def revoke_after_first_pages() -> None:
        await until(lambda: emu.adobe.stats.requests >= 5)
        emu.adobe.revoke_tokens()

    revoker = asyncio.create_task(revoke_after_first_pages())
    result = await sync(db, emu, max_concurrency=8)
    await revoker
    assert result.ok, result.error
    assert emu.adobe.stats.token_requests == 2
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()
    events = [r[0] for r in query(db, "SELECT event FROM token_events ORDER BY id")]
    assert events.count("invalidated") == 1


async def test_json_logs_are_bound_to_source_and_run(tmp_path: Path, start_emu: StartEmu) -> None:
    """Real JSON lines: sync.finished carries source, run_id and the counts; no secret appears."""
    emu = await start_emu(products=12)
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    result = await sync(tmp_path / "s.db", emu)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = next(e for e in lines if e["event"] == "sync.finished")
    assert (finished["source"], finished["run_id"], finished["level"]) == (
        "shop",
        result.run_id,
        "info",
    )
    assert (finished["items_seen"], finished["requests"]) == (12, 2 + 1)  # pages, the probe
    issued = next(e for e in lines if e["event"] == "token.issued")
    assert issued["run_id"] == result.run_id and issued["fingerprint"].startswith("sha256:")
    text = stream.getvalue()
    assert emu.adobe.config.client_secret not in text
    assert emu.adobe.issued_tokens and all(token not in text for token in emu.adobe.issued_tokens)


async def test_token_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    """With one fake clock for both sides, no request ever carries an expired token."""
    clock = FakeClock()
    config = EmulatorConfig(adobe=AdobeConfig(products=40, token_lifetime=600), seed=3)
    async with Emulator(config, clock=clock) as emu:
        settings = settings_for(tmp_path / "s.db", adobe_source(emu))
        async with Runtime(settings, clock=clock) as runtime:
            await runtime.sync("shop", "full")
            clock.advance(299)  # 301 s left: more than half the lifetime, still handed out
            await runtime.sync("shop", "full")
            assert emu.adobe.stats.token_requests == 1
            clock.advance(2)  # 299 s left: inside the (capped) margin, refreshed first
            await runtime.sync("shop", "full")
        assert emu.adobe.stats.token_requests == 2
        assert emu.adobe.stats.expired_token_requests == 0
    events = [r[0] for r in query(tmp_path / "s.db", "SELECT event FROM token_events ORDER BY id")]
    assert events == ["issued", "refreshed"]


async def test_an_internal_error_shows_a_token_by_its_fingerprint_only(
    tmp_path: Path, start_emu: StartEmu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An arbitrary exception's message may hold a header or a body: the token in it becomes its
    fingerprint in the run's result and row (the rest of the message stays readable)."""
    emu = await start_emu(products=20)
    db = tmp_path / "s.db"

    async def broken(self: AdobeCommerceSource, *args: Any) -> Any:
        (token,) = emu.adobe.ims.tokens  # the one the run obtained and sent
        raise KeyError(f"Authorization: Bearer {token} for sku WH-0001")

    monkeypatch.setattr(AdobeCommerceSource, "probe", broken)
    with capture_logs():
        result = await sync(db, emu)
    (token,) = emu.adobe.ims.tokens
    error = result.error or ""
    assert error.startswith(
        f"internal error: KeyError: 'Authorization: Bearer {fingerprint(token)} for sku WH-0001'"
    ), error
    assert token not in error and token[:40] not in error
    assert query(db, "SELECT error FROM sync_runs") == [(error,)]


async def test_an_unexpected_exception_ends_the_run_failed_not_succeeded(
    tmp_path: Path, start_emu: StartEmu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any exception besides syncd's own is recorded as a failed run ("internal error: ...",
    one line, with where it was raised), logged with its stack, and the next run resumes."""
    emu = await start_emu(products=40)
    db = tmp_path / "s.db"

    async def broken(self: AdobeCommerceSource, *args: Any) -> Any:
        missing: Any = None  # what an unexpected answer leaves: an AttributeError below
        return missing.total

    monkeypatch.setattr(AdobeCommerceSource, "probe", broken)
    with capture_logs() as logs:
        result = await sync(db, emu)
    assert result.status == "failed" and result.kind == "full"
    error = result.error or ""
    assert re.fullmatch(
        r"internal error: AttributeError: 'NoneType' object has no attribute 'total' "
        r"\(at test_sync_adobe\.py:\d+ in broken\)",
        error,
    ), error
    assert query(db, "SELECT status, error FROM sync_runs") == [("failed", error)]
    internal = next(e for e in logs if e["event"] == "sync.internal_error")
    assert internal["error_type"] == "AttributeError" and internal["log_level"] == "error"
    assert internal["stack"][-1].endswith("in broken")
    assert any(frame.startswith("syncd/sync.py:") for frame in internal["stack"])
    finished = next(e for e in logs if e["event"] == "sync.finished")
    assert (finished["status"], finished["log_level"]) == ("failed", "error")
    # The pages were stored and stay; the next run resumes from the checkpoint.
    assert len(stored_products(db, "shop")) == 40
    monkeypatch.undo()
    emu.adobe.stats.reset()
    again = await sync(db, emu)
    assert again.ok and again.kind == "full"
    assert emu.adobe.stats.requests == 1 + 1  # page 1 again for total_count, then the probe
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_the_daemon_outlives_an_internal_error(
    tmp_path: Path, start_emu: StartEmu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run ending in an internal error is one failed result to the daemon: no crash, the
    breaker counts it, and the source keeps its schedule."""
    emu = await start_emu(products=20)

    async def broken(self: AdobeCommerceSource, *args: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(AdobeCommerceSource, "probe", broken)
    settings = settings_for(tmp_path / "d.db", adobe_source(emu, schedule="1h"))
    with capture_logs() as logs:
        async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as daemon:
            # The start-up run's result is recorded before its job lets go of the source.
            await until(lambda: len(daemon.results) == 1 and not daemon.running("shop"))
            await daemon.trigger("shop")
            assert [r.status for r in daemon.results] == ["failed", "failed"]
            assert daemon.next_run("shop") is not None
    assert all(
        r.error and r.error.startswith("internal error: ZeroDivisionError: boom")
        for r in daemon.results
    )
    assert not [e for e in logs if e["event"] == "sync.crashed"]


async def test_a_page_size_over_the_store_limit_names_the_real_limit(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A store capping pageSize at 50 refuses 100: the run fails with Magento's message filled in
    from its parameters and the limit to set, not a guessed 300; nothing is stored."""
    emu = await start_emu(products=120, page_size_cap=50)
    db = tmp_path / "s.db"
    result = await sync(db, emu, page_size=100)
    assert result.status == "failed"
    assert result.error == (
        "source 'shop': the store refused page_size=100 (Maximum SearchCriteria pageSize is 50); "
        "set page_size to at most 50"
    )
    assert emu.adobe.stats.requests == 1  # a refusal is not retried
    assert stored_products(db, "shop") == {}
    assert (await sync(db, emu, page_size=50)).ok


async def test_an_incremental_run_reads_everything_from_a_silently_capping_store(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """The keyset read trusts total_count, not full pages: 120 changes asked 100 at a time from a
    store that serves 50 are all read, in ceil(120 / 50) requests."""
    emu = await start_emu(products=600, page_size_cap=50, page_size_cap_silent=True)
    db = tmp_path / "s.db"
    assert (await sync(db, emu, page_size=50, incremental_overlap=0)).ok
    for sku in list(emu.adobe.catalog.skus())[::5]:
        emu.adobe.catalog.update(sku, price=3.0)
    emu.adobe.stats.reset()
    result = await sync(db, emu, page_size=100, incremental_overlap=0)
    assert result.kind == "incremental" and result.ok, result.error
    assert result.totals.items_updated == 120 and emu.adobe.stats.requests == 3
    assert stored_products(db, "shop") == emu.adobe.catalog.snapshot()


async def test_another_400_is_one_clear_line_and_not_retried(
    tmp_path: Path, start_emu: StartEmu
) -> None:
    """A 400 that is not about pageSize fails the run with Magento's message, at once."""
    emu = await start_emu(products=20)
    emu.adobe.faults.add(Fault("status", status=400))
    result = await sync(tmp_path / "s.db", emu)
    assert result.status == "failed"
    assert result.error == (
        f"GET {emu.url}/rest/V1/products was refused with HTTP 400: Service unavailable (HTTP 400)."
    )
    assert result.totals.requests == 1 and result.totals.retries == 0


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            {"message": "Maximum SearchCriteria pageSize is %max", "parameters": {"max": 50}},
            "Maximum SearchCriteria pageSize is 50",
        ),
        (
            {
                "message": "%fieldName is %maxLength long",
                "parameters": {"fieldName": "sku", "maxLength": 64},
            },
            "sku is 64 long",
        ),
        (
            {"message": "Invalid attribute name: %1", "parameters": ["colour"]},
            "Invalid attribute name: colour",
        ),
        ({"message": "%1 %10", "parameters": list("abcdefghij")}, "a j"),
        ({"message": "plain\n  text"}, "plain text"),
        (["not", "an", "object"], '["not", "an", "object"]'),
    ],
)
def test_magento_messages_are_filled_in(body: Any, text: str) -> None:
    """Magento's placeholders are filled from `parameters`, by name or by position."""
    assert magento_message(body) == text

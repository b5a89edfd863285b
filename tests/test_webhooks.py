"""Webhook delivery against a real loopback receiver that misbehaves for a while: every entry
still arrives, in order per source, each batch signed; backoff runs on a fake clock."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.config.feed import ChangesSettings, WebhookSettings
from syncd.config.settings import StoreSettings
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.errors import ChangesExpiredError
from syncd.feed import WebhookDispatcher, full_jitter, sign, verify, webhook_backlog
from syncd.feed.webhooks import DeliveryError, WebhookSender
from syncd.runtime import Runtime
from syncd.sources.base import make_record
from syncd.store import ProductRecord, SqliteStore
from syncd.store.base import ChangeFeed
from syncd.store.postgres import PostgresStore
from tests.clocks import FakeClock
from tests.support import adobe_source, settings_for, until

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "whsec-test-0123456789"


def product(sku: str, price: float) -> ProductRecord:
    item = {"sku": sku, "price": price}
    return make_record(
        item, sku=sku, id=None, name=None, price=price, status=None, type_id=None, updated_at=None
    )


class Receiver:
    """An aiohttp server that answers each POST with the next scripted behaviour, then 200."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.accepted: list[tuple[dict[str, Any], str, bytes]] = []
        self.attempts = 0
        self.redirect_hits = 0
        self.url = ""
        self._never = asyncio.Event()

    def entries(self) -> int:
        """Feed entries delivered in the accepted batches."""
        return sum(len(batch["entries"]) for batch, _, _ in self.accepted)

    async def hook(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.attempts += 1
        action = self.script.pop(0) if self.script else "ok"
        if action == "500":
            return web.Response(status=500, text="boom")
        if action == "timeout":
            await self._never.wait()  # the sender's timeout ends this request
        if action == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)  # never reaches the sender
        if action == "redirect":
            raise web.HTTPFound(location="/elsewhere")
        self.accepted.append((await request.json(), request.headers["Syncd-Signature"], body))
        return web.Response(status=204)

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.redirect_hits += 1
        return web.Response(status=200)


@pytest.fixture
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[Receiver]:
    rec = Receiver(getattr(request, "param", []))
    app = web.Application()
    app.router.add_post("/hook", rec.hook)
    app.router.add_post("/elsewhere", rec.elsewhere)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


def hook_settings(url: str, **overrides: object) -> WebhookSettings:
    fields: dict[str, object] = {
        "name": "hook",
        "url": url,
        "secret": SecretStr(SECRET),
        "batch_size": 10,
        "timeout": 0.2,
        "backoff_base": 1.0,
        "backoff_cap": 30.0,
        "retry_interval": 3600.0,
    }
    return WebhookSettings(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend: None for SQLite (a file in tmp_path), else a PostgreSQL database's URL."""
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


def store_for(url: str | None, tmp_path: Path) -> SqliteStore | PostgresStore:
    return SqliteStore(tmp_path / "syncd.db") if url is None else PostgresStore(url)


async def cursors_reach(store: SqliteStore | PostgresStore, expected: dict[str, int]) -> None:
    """Wait (bounded) for the cursors: each moves just after its batch's 2xx arrives."""
    async with asyncio.timeout(5):
        while await store.webhook_cursors("hook") != expected:  # noqa: ASYNC110 - a DB row
            await asyncio.sleep(0.001)


async def fill(store: SqliteStore | PostgresStore) -> None:
    """25 entries in source a, 12 in b (creates, then updates)."""
    await store.upsert_products("a", [product(f"a{i}", 1) for i in range(20)], T0)
    await store.upsert_products("a", [product(f"a{i}", 2) for i in range(5)], T0)
    await store.upsert_products("b", [product(f"b{i}", 1) for i in range(12)], T0)


@pytest.mark.parametrize(
    "receiver",
    [["500", "timeout", "500", "drop", "500", "ok", "500", "timeout", "500", "500"]],
    indirect=True,
)
async def test_a_flaky_receiver_ends_up_with_every_entry_in_order_each_signed(
    tmp_path: Path, receiver: Receiver, backend_url: str | None
) -> None:
    clock = FakeClock(T0)
    async with store_for(backend_url, tmp_path) as store:
        await fill(store)
        hooks = [hook_settings(receiver.url)]
        assert await webhook_backlog(store, hooks) == {("hook", "a"): 25, ("hook", "b"): 12}
        with capture_logs() as logs:
            async with WebhookDispatcher(hooks, store, clock, random.Random(1)) as dispatcher:
                dispatcher.wake()
                await until(lambda: receiver.entries() >= 37)
                await cursors_reach(store, {"a": 25, "b": 12})
                assert await webhook_backlog(store, hooks) == {("hook", "a"): 0, ("hook", "b"): 0}
                # New entries after a run: woken, delivered from the persisted cursor.
                await store.upsert_products("b", [product("b0", 9)], T0)
                dispatcher.wake()
                await until(lambda: receiver.entries() >= 38)
                await cursors_reach(store, {"a": 25, "b": 13})
    received: dict[str, list[int]] = {"a": [], "b": []}
    for body, signature, raw in receiver.accepted:
        assert verify(SECRET, signature, raw, now=clock.now().timestamp())
        source = str(body["source"])
        seqs = [int(e["seq"]) for e in body["entries"]]
        assert body["after"] == (received[source][-1] if received[source] else 0)
        received[source].extend(seqs)
    # Exactly once here (each retried batch was refused), in order, nothing missing.
    assert received == {"a": list(range(1, 26)), "b": list(range(1, 14))}
    assert receiver.attempts == len(receiver.accepted) + 9
    failed = [e for e in logs if e["event"] == "webhook.failed"]
    assert [e["failures"] for e in failed] == [1, 2, 3, 4, 5, 1, 2, 3, 4]
    assert {e["error"] for e in failed} >= {"HTTP 500", "no answer within 0.2 s"}
    # Backoff slept on the fake clock, each delay under its full-jitter cap, and no secret logged.
    assert clock.slept and all(
        d <= min(30.0, 2.0**n)
        for d, n in zip(clock.slept, [0, 1, 2, 3, 4, 0, 1, 2, 3], strict=True)
    )
    assert SECRET not in repr(logs)
    assert any(e["event"] == "webhook.delivered" for e in logs)


@pytest.mark.parametrize("receiver", [["redirect"]], indirect=True)
async def test_a_redirect_is_a_failure_and_is_not_followed(
    tmp_path: Path, receiver: Receiver
) -> None:
    clock = FakeClock(T0)
    async with SqliteStore(tmp_path / "syncd.db") as store:
        await store.upsert_products("a", [product("a1", 1)], T0)
        async with aiohttp.ClientSession() as session:
            sender = WebhookSender(hook_settings(receiver.url), store, session, clock)
            with pytest.raises(DeliveryError, match=r"302 \(redirects are not followed\)"):
                await sender.deliver_pending()
            assert receiver.redirect_hits == 0
            assert await store.webhook_cursors("hook") == {}
            assert await sender.deliver_pending() == 1  # the script is over: 2xx now


async def test_a_cursor_behind_retention_resumes_at_the_oldest_entry_loudly(
    tmp_path: Path, receiver: Receiver
) -> None:
    clock = FakeClock(T0)
    async with SqliteStore(tmp_path / "syncd.db") as store:
        for day in range(4):
            await store.upsert_products("a", [product("a1", day)], T0 + timedelta(days=day))
        await store.set_webhook_cursor("hook", "a", 1, T0)
        await store.prune_changes(T0 + timedelta(days=2))
        async with aiohttp.ClientSession() as session:
            sender = WebhookSender(hook_settings(receiver.url), store, session, clock)
            with capture_logs() as logs:
                assert await sender.deliver_pending() == 2
    assert logs[0]["event"] == "webhook.gap"
    ((body, _, _),) = receiver.accepted
    assert body["after"] == 2 and [e["seq"] for e in body["entries"]] == [3, 4]


def test_signature_round_trip_and_refusals() -> None:
    body = b'{"entries":[]}'
    header = sign(SECRET, 1_767_225_600, body)
    assert header.startswith("t=1767225600,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, body, now=1_767_225_600 + 299)
    assert not verify(SECRET, header, body, now=1_767_225_600 + 301)  # replayed later
    assert not verify(SECRET, header, body + b" ", now=1_767_225_600)
    assert not verify("other-secret", header, body, now=1_767_225_600)
    assert not verify(SECRET, "v1=abc", body, now=1_767_225_600)
    rolled = f"{header},v1={'0' * 64}"
    assert verify(SECRET, rolled, body, now=1_767_225_600)


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    rng = random.Random(3)
    for attempt in range(70):
        cap = min(60.0, 0.5 * 2.0**attempt)
        delays = [full_jitter(attempt, 0.5, 60.0, rng) for _ in range(50)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # spread over the whole range, not a fixed delay


def test_webhook_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="http"):
        hook_settings("ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="name"):
        hook_settings("http://127.0.0.1/x", name="Bad Name")
    with pytest.raises(ValueError, match="secret"):
        hook_settings("http://127.0.0.1/x", secret=SecretStr("  "))
    with pytest.raises(DeliveryError):
        raise DeliveryError("x")


@pytest.mark.parametrize("receiver", [["500"] * 1000], indirect=True)
async def test_the_daemon_pushes_after_a_run_and_a_dead_receiver_only_builds_a_backlog(
    tmp_path: Path, receiver: Receiver, backend_url: str | None
) -> None:
    """Two webhooks on one daemon: the dead one (always 500) neither blocks the run nor the live
    one, which gets every entry after the run; the backlog is in the metrics."""
    live = Receiver([])
    app = web.Application()
    app.router.add_post("/hook", live.hook)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hooks = (
        hook_settings(f"http://127.0.0.1:{port}/hook", name="live"),
        hook_settings(receiver.url, name="dead", backoff_base=0.01, backoff_cap=0.05),
    )
    try:
        async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=30))) as emu:
            settings = settings_for(tmp_path / "d.db", adobe_source(emu), webhooks=hooks)
            if backend_url is not None:
                settings = settings.model_copy(update={"store": StoreSettings(url=backend_url)})
            with capture_logs() as logs:
                async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as d:
                    await until(lambda: len(d.results) == 1)
                    assert d.results[0].ok
                    await until(lambda: sum(len(b[0]["entries"]) for b in live.accepted) >= 30)
                    await until(lambda: receiver.attempts >= 2)
                    text, _ = await d.monitor.metrics()
        assert 'syncd_webhook_backlog{source="shop",webhook="dead"} 30.0' in text.decode()
        assert 'syncd_webhook_backlog{source="shop",webhook="live"} 0.0' in text.decode()
        assert {e["op"] for b in live.accepted for e in b[0]["entries"]} == {"created"}
        assert any(e["event"] == "webhook.failed" and e["webhook"] == "dead" for e in logs)
    finally:
        await runner.cleanup()


def test_the_receiver_snippet_in_the_docs_verifies_what_syncd_signs() -> None:
    """docs/CHANGES.md's ten lines of plain Python accept a real signature and refuse a forgery."""
    doc = (Path(__file__).parent.parent / "docs" / "CHANGES.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation
    body = b'{"entries":[]}'
    header = sign(SECRET, int(time.time()), body)
    assert namespace["verify"](SECRET, header, body)
    assert not namespace["verify"](SECRET, header, body + b"x")
    assert not namespace["verify"](SECRET, sign(SECRET, int(time.time()) - 3600, body), body)


async def test_a_bug_in_a_delivery_is_logged_and_retried_not_fatal(
    tmp_path: Path, receiver: Receiver
) -> None:
    class Flaky:
        """The store, but its first read of the feed raises what no code expects."""

        def __init__(self, store: SqliteStore) -> None:
            self.store, self.calls = store, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

        async def feed_heads(self) -> Any:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("unexpected")
            return await self.store.feed_heads()

    clock = FakeClock(T0)
    async with SqliteStore(tmp_path / "syncd.db") as store:
        await store.upsert_products("a", [product("a1", 1)], T0)
        hooks = [hook_settings(receiver.url)]
        with capture_logs() as logs:
            async with WebhookDispatcher(hooks, Flaky(store), clock, random.Random(1)):
                await until(lambda: len(receiver.accepted) == 1)
    errors = [e for e in logs if e["event"] == "webhook.internal_error"]
    assert [e["error"] for e in errors] == ["RuntimeError: unexpected"]


async def test_the_daemon_prunes_the_feed_after_a_run(
    tmp_path: Path, backend_url: str | None
) -> None:
    """Retention shorter than a run: the run's own entries are pruned right after it, and a
    reader from seq 0 is told to resync."""
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=12))) as emu:
        settings = settings_for(
            tmp_path / "d.db", adobe_source(emu), changes=ChangesSettings(retention=0.001)
        )
        if backend_url is not None:
            settings = settings.model_copy(update={"store": StoreSettings(url=backend_url)})
        with capture_logs() as logs:
            async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as d:
                await until(lambda: any(e["event"] == "changes.pruned" for e in logs))
                assert isinstance(runtime.store, ChangeFeed)
                heads = await runtime.store.feed_heads()
                with pytest.raises(ChangesExpiredError):
                    await runtime.store.changes("shop", 0, 10)
        assert len(d.results) == 1
    pruned = next(e for e in logs if e["event"] == "changes.pruned")
    assert pruned["entries"] == 12 and heads["shop"].pruned_through == heads["shop"].last_seq == 12

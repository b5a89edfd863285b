"""The shared token cache: single-flight, refresh-ahead, targeted invalidation, restart reuse."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd.auth import AccessToken, TokenCache, fingerprint
from syncd.clock import FakeClock
from syncd.errors import AuthError, StoreError
from syncd.store import SqliteStore, TokenRecord
from tests.conftest import ManualClock, settle
from tests.support import until


class CountingProvider:
    """A fake credential: counts token requests, can block them, can fail."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600, margin: float = 600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self._margin = margin

    @property
    def cache_key(self) -> str:
        return "fake:key"

    @property
    def refresh_margin(self) -> float:
        return self._margin

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        self.calls += 1
        await self.gate.wait()
        if self.fail_with:
            raise self.fail_with
        now = self.clock.now()
        return AccessToken(f"token-{self.calls}", now + timedelta(seconds=self.lifetime), now)

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.value}"}


async def test_fifty_concurrent_callers_cause_one_token_request(
    store: SqliteStore, clock: FakeClock
) -> None:
    """Single-flight: everyone waits on the one request in flight and gets its token."""
    provider = CountingProvider(clock)
    provider.gate.clear()
    cache = TokenCache(store, clock)
    waiters = [asyncio.create_task(cache.get(provider, "s")) for _ in range(50)]
    await settle()
    provider.gate.set()
    tokens = await asyncio.gather(*waiters)
    assert provider.calls == 1
    assert {t.value for t in tokens} == {"token-1"}


async def test_refreshes_ahead_of_expiry(store: SqliteStore, clock: FakeClock) -> None:
    """Inside the margin before expiry the token is replaced, never handed out."""
    provider = CountingProvider(clock, lifetime=3600, margin=600)
    cache = TokenCache(store, clock)
    first = await cache.get(provider, "s")
    clock.advance(2999)  # 601 s left: still outside the margin
    assert (await cache.get(provider, "s")).value == first.value
    clock.advance(2)  # 599 s left: inside the margin
    second = await cache.get(provider, "s")
    assert second.value == "token-2"
    assert provider.calls == 2
    assert [e.event for e in await store.token_events("s")] == ["refreshed", "issued"]


async def test_short_lived_tokens_are_not_refreshed_on_every_call(
    store: SqliteStore, clock: FakeClock
) -> None:
    """A lifetime shorter than the margin still gets used for half its life."""
    provider = CountingProvider(clock, lifetime=60, margin=600)
    cache = TokenCache(store, clock)
    await cache.get(provider, "s")
    clock.advance(20)
    await cache.get(provider, "s")
    assert provider.calls == 1


async def test_invalidate_only_drops_the_rejected_token(
    store: SqliteStore, clock: FakeClock
) -> None:
    """N workers reporting a 401 for the same token cause one refresh, stale reports are ignored."""
    provider = CountingProvider(clock)
    cache = TokenCache(store, clock)
    rejected = await cache.get(provider, "s")
    results = await asyncio.gather(*(cache.invalidate(provider, rejected, "s") for _ in range(20)))
    assert results.count(True) == 1
    fresh = await cache.get(provider, "s")
    assert fresh.value == "token-2"
    assert not await cache.invalidate(provider, rejected, "s")  # late 401 for the old token
    assert (await cache.get(provider, "s")).value == "token-2"
    assert provider.calls == 2


async def test_restart_reuses_a_persisted_valid_token(tmp_path: Path, clock: FakeClock) -> None:
    """A new process (new cache, same database) reuses the token instead of minting one."""
    provider = CountingProvider(clock)
    async with SqliteStore(tmp_path / "t.db") as store:
        first = await TokenCache(store, clock).get(provider, "s")
    async with SqliteStore(tmp_path / "t.db") as store:
        with capture_logs() as logs:
            again = await TokenCache(store, clock).get(provider, "s")
        events = [e.event for e in await store.token_events("s")]
    assert again.value == first.value
    assert provider.calls == 1
    assert events == ["reused", "issued"]
    assert logs[0]["event"] == "token.reused"
    assert logs[0]["fingerprint"] == first.fingerprint
    assert first.value not in str(logs)


async def test_restart_after_expiry_mints_a_new_token(tmp_path: Path, clock: FakeClock) -> None:
    """A persisted token past its margin is not reused."""
    provider = CountingProvider(clock)
    async with SqliteStore(tmp_path / "t.db") as store:
        await TokenCache(store, clock).get(provider, "s")
    clock.advance(3500)
    async with SqliteStore(tmp_path / "t.db") as store:
        token = await TokenCache(store, clock).get(provider, "s")
    assert token.value == "token-2"


async def test_failure_is_recorded_and_raised(store: SqliteStore, clock: FakeClock) -> None:
    """A refused token request becomes a `failed` event and an AuthError for the caller."""
    provider = CountingProvider(clock)
    provider.fail_with = AuthError("IMS refused: invalid_client")
    cache = TokenCache(store, clock)
    with capture_logs() as logs, pytest.raises(AuthError, match="invalid_client"):
        await cache.get(provider, "s")
    (event,) = await store.token_events("s")
    assert (event.event, event.detail) == ("failed", "IMS refused: invalid_client")
    assert logs[0]["event"] == "token.failed" and logs[0]["log_level"] == "error"


def test_token_repr_hides_the_secret(clock: FakeClock) -> None:
    """repr() of a token (as in a traceback) shows the fingerprint's source, never the value."""
    token = AccessToken("very-secret-value", None, clock.now(), refresh_token="also-secret")
    assert "very-secret" not in repr(token) and "also-secret" not in repr(token)
    assert token.fingerprint.startswith("sha256:") and len(token.fingerprint) == 19


class RecordingProvider(CountingProvider):
    """Also records which previous token each request traded in."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.traded: list[str | None] = []

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        self.traded.append(previous.refresh_token if previous else None)
        return await super().obtain(previous)


async def test_a_grant_installed_by_another_process_is_adopted(
    tmp_path: Path, clock: FakeClock
) -> None:
    """`syncd auth` beside a running daemon: the daemon uses the stored grant instead of refreshing."""
    provider = CountingProvider(clock)
    async with (
        SqliteStore(tmp_path / "t.db") as daemon_db,
        SqliteStore(tmp_path / "t.db") as cli_db,
    ):
        daemon = TokenCache(daemon_db, clock)
        rejected = await daemon.get(provider, "s")
        await daemon.invalidate(provider, rejected, "s")
        installed = AccessToken("installed", clock.now() + timedelta(hours=1), clock.now())
        await TokenCache(cli_db, clock).install(provider, installed, "s")
        assert (await daemon.get(provider, "s")).value == "installed"
    assert provider.calls == 1


async def test_renewal_trades_in_the_newest_stored_refresh_token(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Another process rotated the grant: this one trades in the rotated refresh token, not its own."""
    provider = RecordingProvider(clock)
    async with SqliteStore(tmp_path / "t.db") as mine, SqliteStore(tmp_path / "t.db") as theirs:
        cache = TokenCache(mine, clock)
        await cache.install(
            provider, AccessToken("a1", clock.now() + timedelta(hours=1), clock.now(), "r1"), "s"
        )
        rotated = AccessToken("a2", clock.now() + timedelta(hours=1), clock.now(), "r2")
        await TokenCache(theirs, clock).install(provider, rotated, "s")
        clock.advance(7200)
        await cache.get(provider, "s")
    assert provider.traded == ["r2"]


async def test_a_cancelled_caller_does_not_lose_the_renewal(
    store: SqliteStore, clock: FakeClock
) -> None:
    """Cancelled mid-refresh: the answer is still persisted and cached, and later callers join it."""
    provider = CountingProvider(clock)
    provider.gate.clear()
    cache = TokenCache(store, clock)
    first = asyncio.create_task(cache.get(provider, "s"))
    await settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.create_task(cache.get(provider, "s"))
    await settle()
    provider.gate.set()
    assert (await second).value == "token-1"
    assert provider.calls == 1
    stored = await store.load_token(provider.cache_key)
    assert stored is not None and stored.access_token == "token-1"


async def test_callers_waiting_on_a_failed_request_share_its_error(
    store: SqliteStore, clock: FakeClock
) -> None:
    """A refused credential is asked once per burst of callers, not once per caller in turn."""
    provider = CountingProvider(clock)
    provider.gate.clear()
    provider.fail_with = AuthError("IMS refused: invalid_client", status=400)
    cache = TokenCache(store, clock)
    waiters = [asyncio.create_task(cache.get(provider, "s")) for _ in range(20)]
    await settle()
    provider.gate.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert provider.calls == 1
    assert all(isinstance(o, AuthError) and "invalid_client" in str(o) for o in outcomes)
    assert [e.event for e in await store.token_events("s")] == ["failed"]
    # A caller arriving afterwards (the next run) asks again, and succeeds once it can.
    provider.fail_with = None
    assert (await cache.get(provider, "s")).value == "token-2"


class RotatingProvider(CountingProvider):
    """A credential whose every answer carries a new refresh token; records the one traded in."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.traded: list[str | None] = []

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        self.traded.append(previous.refresh_token if previous else None)
        token = await super().obtain(previous)
        return AccessToken(
            token.value, token.expires_at, token.obtained_at, f"refresh-secret-{self.calls}"
        )


def fail_token_writes(monkeypatch: pytest.MonkeyPatch, store: SqliteStore) -> list[bool]:
    """Make `store.save_token` fail as a locked database does while the returned flag list says so."""
    real = store.save_token
    locked = [True]

    async def save_token(key: str, token: TokenRecord, now: datetime) -> None:
        if locked[0]:
            raise StoreError("cannot save a token: database is locked")
        await real(key, token, now)

    monkeypatch.setattr(store, "save_token", save_token)
    return locked


async def test_a_failed_write_is_retried_before_the_token_is_used(
    store: SqliteStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `database is locked`: the renewed token is written on a retry, then handed out; one request."""
    provider = RotatingProvider(clock)
    cache = TokenCache(store, clock, save_attempts=3, save_retry_delay=0.5)
    locked = fail_token_writes(monkeypatch, store)
    real_sleep = clock.sleep

    async def unlock_while_waiting(seconds: float) -> None:
        locked[0] = False
        await real_sleep(seconds)

    monkeypatch.setattr(clock, "sleep", unlock_while_waiting)
    with capture_logs() as logs:
        token = await cache.get(provider, "s")
    assert (token.value, provider.calls, clock.slept) == ("token-1", 1, [0.5])
    stored = await store.load_token(provider.cache_key)
    assert stored is not None and (stored.access_token, stored.refresh_token) == (
        "token-1",
        "refresh-secret-1",
    )
    (failed,) = [e for e in logs if e["event"] == "token.persist_failed"]
    assert (failed["fingerprint"], failed["attempt"], failed["attempts"]) == (
        token.fingerprint,
        1,
        3,
    )
    assert failed["refresh_fingerprint"] == fingerprint("refresh-secret-1")
    assert "token-1" not in repr(logs) and "refresh-secret" not in repr(logs)
    (event,) = await store.token_events("s")
    assert (event.event, event.detail) == ("issued", "saved after 1 failed write(s)")


async def test_an_unsaved_rotation_is_kept_and_never_traded_in_twice(
    store: SqliteStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes fail past every retry: the run gets a StoreError, the new pair stays in memory unused,
    no second request is made, and the next get saves it; the next renewal trades in its refresh token."""
    provider = RotatingProvider(clock)
    cache = TokenCache(store, clock, save_attempts=2, save_retry_delay=0.1)
    old = AccessToken("token-0", clock.now() + timedelta(hours=1), clock.now(), "refresh-secret-0")
    await cache.install(provider, old, "s")
    clock.advance(3600)
    locked = fail_token_writes(monkeypatch, store)
    waiters = [asyncio.create_task(cache.get(provider, "s")) for _ in range(10)]
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, StoreError) for o in outcomes)
    assert "could not be saved" in str(outcomes[0]) and "database is locked" in str(outcomes[0])
    assert provider.calls == 1
    assert clock.slept == [0.1]  # one round of retries for the whole burst, not one per caller
    pending = await cache.current(provider)
    assert pending is not None and pending.refresh_token == "refresh-secret-1"
    with pytest.raises(StoreError):
        await cache.get(provider, "s")  # still locked: still not handed out, still no new request
    assert not await cache.invalidate(provider, old, "s")  # a late 401 for the old token
    assert provider.calls == 1
    stored = await store.load_token(provider.cache_key)
    assert stored is not None and stored.refresh_token == "refresh-secret-0"

    locked[0] = False
    assert (await cache.get(provider, "s")).value == "token-1"
    stored = await store.load_token(provider.cache_key)
    assert stored is not None and (stored.access_token, stored.refresh_token) == (
        "token-1",
        "refresh-secret-1",
    )
    clock.advance(3600)
    assert (await cache.get(provider, "s")).value == "token-2"
    assert provider.traded == ["refresh-secret-0", "refresh-secret-1"]


async def test_leaving_the_cache_saves_an_unsaved_token_or_says_it_is_lost(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At shutdown an unsaved token gets one more write; if that fails too, `token.lost` says so."""
    provider = RotatingProvider(clock)
    for still_locked in (False, True):
        async with SqliteStore(tmp_path / f"{still_locked}.db") as store:
            locked = fail_token_writes(monkeypatch, store)
            with capture_logs() as logs:
                async with TokenCache(store, clock, save_attempts=1) as cache:
                    with pytest.raises(StoreError):
                        await cache.get(provider, "s")
                    locked[0] = still_locked
            stored = await store.load_token(provider.cache_key)
        lost = [e for e in logs if e["event"] == "token.lost"]
        if still_locked:
            assert stored is None and [e["source"] for e in lost] == ["s"]
        else:
            assert stored is not None and stored.refresh_token == f"refresh-secret-{provider.calls}"
            assert lost == []


async def test_leaving_the_cache_waits_for_a_renewal_whose_caller_was_cancelled(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A shutdown cancels the run waiting on a renewal; the cache's exit lets the renewal end and
    save its token before the store closes (else a rotated refresh token was lost unlogged)."""
    provider = CountingProvider(clock)
    provider.gate.clear()
    async with SqliteStore(tmp_path / "s.db") as store:
        cache = TokenCache(store, clock)
        async with cache:
            caller = asyncio.create_task(cache.get(provider, "s"))
            await until(lambda: provider.calls == 1)
            caller.cancel()
            await asyncio.gather(caller, return_exceptions=True)
            leaving = asyncio.create_task(cache.__aexit__(None, None, None))
            await settle()
            assert not leaving.done()  # waiting for the renewal on the wire
            provider.gate.set()
            await leaving
        stored = await store.load_token(provider.cache_key)
        assert stored is not None and stored.access_token == "token-1"
        assert [e.event for e in await store.token_events("s")] == ["issued"]


async def test_a_renewal_still_unanswered_at_the_exit_deadline_is_reported_lost(
    store: SqliteStore, clock: FakeClock
) -> None:
    """exit_wait 0: the unanswered renewal is cancelled and `token.lost` names its source."""
    provider = CountingProvider(clock)
    provider.gate.clear()
    with capture_logs() as logs:
        async with TokenCache(store, clock, exit_wait=0) as cache:
            caller = asyncio.create_task(cache.get(provider, "shop"))
            await until(lambda: provider.calls == 1)
            caller.cancel()
            await asyncio.gather(caller, return_exceptions=True)
    assert [e["source"] for e in logs if e["event"] == "token.lost"] == ["shop"]
    assert await store.load_token(provider.cache_key) is None


async def test_a_caller_after_a_cancelled_one_joins_the_renewal_instead_of_saving_beside_it(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewal's first write failed and it waits to retry when its caller is cancelled: the
    next caller waits for that renewal; one save succeeds and one `issued` event is recorded."""
    clock = ManualClock()
    provider = RotatingProvider(clock)
    cache = TokenCache(store, clock, save_attempts=3, save_retry_delay=1.0)
    locked = fail_token_writes(monkeypatch, store)
    first = asyncio.create_task(cache.get(provider, "s"))
    await until(lambda: clock.slept == [1.0])  # the renewal waits to retry its write
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    locked[0] = False
    second = asyncio.create_task(cache.get(provider, "s"))
    renewal = cache._entries[provider.cache_key].state.task
    assert renewal is not None
    clock.advance(1.0)
    assert (await second).value == "token-1"
    await asyncio.gather(renewal, return_exceptions=True)
    assert provider.calls == 1
    assert [e.event for e in await store.token_events("s")] == ["issued"]

"""Tokens shared by replicas: two token caches on two stores of one database (SQLite and PostgreSQL)
refresh a credential once between them, wait for each other, and handle a replica that died
mid-refresh (an IMS token is fetched again; an AmeriCommerce grant is never presented twice)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd.auth import AccessToken, TokenCache
from syncd.config.settings import StoreSettings
from syncd.errors import AuthError, NeedsReauthError
from syncd.store.factory import AnyStore, open_store
from tests.clocks import FakeClock, ManualClock
from tests.support import until


async def drive(clock: ManualClock, tasks: list[asyncio.Task[AccessToken]]) -> None:
    """Until every task is done (bounded): whenever a replica waits on the clock (a poll of the
    token row), move the time to the end of its wait; time never moves by itself."""
    for _ in range(1000):
        await until(lambda: all(t.done() for t in tasks) or clock.next_wake() is not None)
        if all(t.done() for t in tasks):
            return
        wake = clock.next_wake()
        assert wake is not None
        clock.advance(wake - clock.monotonic())
    raise AssertionError("the replicas never finished")


class Credential:
    """A fake credential shared by the replicas: counts requests (by refresh token presented),
    can hold them, can refuse them; `spends` makes it a single-use refresh-token grant."""

    def __init__(self, clock: FakeClock, *, spends: bool = False) -> None:
        self.clock = clock
        self.spends = spends
        self.calls = 0
        self.presented: list[str | None] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None

    @property
    def cache_key(self) -> str:
        return "fake:shared"

    @property
    def refresh_margin(self) -> float:
        return 60

    def spends_refresh_token(self) -> bool:
        return self.spends

    async def obtain(self, previous: AccessToken | None) -> AccessToken:
        if self.spends and (previous is None or not previous.refresh_token):
            raise NeedsReauthError("the grant came without a refresh token: run 'syncd auth'")
        self.calls += 1
        self.presented.append(previous.refresh_token if previous else None)
        await self.gate.wait()
        if self.fail_with:
            raise self.fail_with
        now = self.clock.now()
        return AccessToken(
            f"token-{self.calls}", now + timedelta(hours=1), now, f"refresh-{self.calls}"
        )

    def auth_headers(self, token: AccessToken) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.value}"}


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    """One database of each backend, shared by the test's replicas."""
    if request.param == "sqlite":
        return StoreSettings(path=tmp_path / "syncd.db")
    return StoreSettings(url=request.getfixturevalue("postgres_url"))


@pytest.fixture
async def stores(settings: StoreSettings) -> AsyncIterator[tuple[AnyStore, AnyStore]]:
    """Two replicas' stores on the one database."""
    async with open_store(settings) as one, open_store(settings) as two:
        yield one, two


def caches(stores: tuple[AnyStore, AnyStore], clock: FakeClock) -> tuple[TokenCache, TokenCache]:
    """One token cache per replica, polling every 0.5 s of fake time, stale after 60 s."""
    return tuple(  # type: ignore[return-value]
        TokenCache(store, clock, owner=f"replica-{i}", poll_interval=0.5, stale_after=60)
        for i, store in enumerate(stores, 1)
    )


async def test_two_replicas_refresh_an_expired_token_once(
    stores: tuple[AnyStore, AnyStore],
) -> None:
    """100 callers on each replica, one expired grant: one request; the other replica waits for
    the winner's token and records that it reused it, naming the replica that refreshed."""
    clock = ManualClock()
    credential = Credential(clock, spends=True)
    one, two = caches(stores, clock)
    expired = AccessToken("token-0", clock.now(), clock.now(), "refresh-0")
    await one.install(credential, expired, "shop")
    credential.gate.clear()
    callers = [
        asyncio.create_task(cache.get(credential, "shop"))
        for _ in range(100)
        for cache in (one, two)
    ]
    await until(lambda: credential.calls == 1)
    credential.gate.set()
    await until(lambda: any(t.done() for t in callers))  # the winner's token is saved
    await drive(clock, callers)
    tokens = await asyncio.gather(*callers)
    assert {t.value for t in tokens} == {"token-1"}
    assert credential.presented == ["refresh-0"]
    events = await stores[0].token_events("shop")
    refreshed = [e for e in events if e.event == "refreshed"]
    reused = [e for e in events if e.event == "reused"]
    assert len(refreshed) == 1 and len(reused) == 1
    assert reused[0].owner != refreshed[0].owner
    # Waiting on the winner's intent, or arriving once its token is saved: reused either way.
    assert reused[0].detail in (
        f"refreshed by replica {refreshed[0].owner}",
        "persisted token still valid",
    )


async def test_a_failed_refresh_lets_the_waiting_replica_try(
    stores: tuple[AnyStore, AnyStore],
) -> None:
    """The winner's request fails in transit: its intent is abandoned, and the replica that
    waited sends its own request instead of waiting for a token that will not come."""
    clock = ManualClock()
    credential = Credential(clock)
    one, two = caches(stores, clock)
    await one.install(credential, AccessToken("token-0", clock.now(), clock.now(), "r0"), "s")
    credential.gate.clear()
    credential.fail_with = AuthError("token endpoint unreachable")
    first = asyncio.create_task(one.get(credential, "s"))
    await until(lambda: credential.calls == 1)
    second = asyncio.create_task(two.get(credential, "s"))
    await until(lambda: clock.slept != [])
    assert not second.done()  # waiting for replica-1's refresh
    credential.gate.set()
    with pytest.raises(AuthError):
        await first
    credential.fail_with = None
    await drive(clock, [second])
    assert (await second).value == "token-2"
    assert credential.calls == 2


async def test_a_dead_replicas_ims_intent_is_taken_over(
    stores: tuple[AnyStore, AnyStore], clock: FakeClock
) -> None:
    """A replica died after committing its intent: once the intent is stale, a reusable
    credential (IMS) is simply fetched again by another replica."""
    credential = Credential(clock)
    one, two = caches(stores, clock)
    await one.install(credential, AccessToken("token-0", clock.now(), clock.now()), "s")
    state = await stores[0].token_state(credential.cache_key)
    assert state is not None
    assert await stores[0].begin_token_refresh(
        credential.cache_key, state.version, "replica-dead", clock.now(), clock.now()
    )
    with capture_logs() as logs:
        token = await two.get(credential, "s")  # polls (fake time) until the intent is stale
    assert token.value == "token-1" and credential.calls == 1
    assert clock.now() - state.token.issued_at >= timedelta(seconds=60)  # type: ignore[union-attr, operator]
    (stale,) = [e for e in logs if e["event"] == "token.stale_intent"]
    assert stale["holder"] == "replica-dead"


async def test_a_dead_replicas_single_use_refresh_is_never_presented_again(
    stores: tuple[AnyStore, AnyStore], clock: FakeClock
) -> None:
    """A replica died mid-refresh of a single-use grant: its refresh token may be spent, so no
    replica presents it; the grant is dropped and the caller told to run `syncd auth`."""
    credential = Credential(clock, spends=True)
    one, two = caches(stores, clock)
    await one.install(credential, AccessToken("token-0", clock.now(), clock.now(), "r0"), "s")
    state = await stores[0].token_state(credential.cache_key)
    assert state is not None
    assert await stores[0].begin_token_refresh(
        credential.cache_key, state.version, "replica-dead", clock.now(), clock.now()
    )
    with pytest.raises(NeedsReauthError, match="replica-dead"):
        await two.get(credential, "s")
    with pytest.raises(NeedsReauthError, match="without a refresh token"):
        await one.get(credential, "s")
    assert credential.presented == []
    stored = await stores[1].load_token(credential.cache_key)
    assert stored is not None and stored.refresh_token is None
    # `syncd auth` installs a new grant: the intent is gone and refreshing works again.
    await one.install(credential, AccessToken("new", clock.now(), clock.now(), "r-new"), "s")
    assert (await two.get(credential, "s")).value == "token-1"
    assert credential.presented == ["r-new"]


async def test_a_refused_single_use_grant_is_not_presented_by_the_other_replica(
    stores: tuple[AnyStore, AnyStore], clock: FakeClock
) -> None:
    """The store refuses the refresh: the refresh token is dropped for every replica."""
    credential = Credential(clock, spends=True)
    credential.fail_with = NeedsReauthError("refused", source="s")
    one, two = caches(stores, clock)
    await one.install(credential, AccessToken("token-0", clock.now(), clock.now(), "r0"), "s")
    with pytest.raises(NeedsReauthError):
        await one.get(credential, "s")
    stored = await stores[1].token_state(credential.cache_key)
    assert stored is not None and stored.refreshing_by is None
    assert stored.token is not None and stored.token.refresh_token is None
    assert credential.presented == ["r0"]
    credential.fail_with = None
    with pytest.raises(NeedsReauthError):
        await two.get(credential, "s")  # nothing left to present
    assert credential.presented == ["r0"]

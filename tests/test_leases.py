"""Leases on PostgreSQL: claim, renewal, expiry, SKIP LOCKED between claimers, and the fence
that refuses every write of a run whose lease was lost (store/postgres_leases.py).

Expiry is in the database's clock: a test expires a lease by moving its `expires_at` into the
past, not by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from syncd.errors import LeaseLostError, SourceBusyError, StoreError
from syncd.fleet import first_run, next_run
from syncd.schedule import parse_schedule
from syncd.sources.base import make_record
from syncd.store import PageCommit, ProductRecord, RunTotals
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_leases import PostgresLeases

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_url) as opened:
        yield opened


@pytest.fixture
def leases(store: PostgresStore) -> PostgresLeases:
    return PostgresLeases(store, lease_seconds=30)


def product(sku: str, price: float = 1.0) -> ProductRecord:
    ident = int(sku[1:])
    item = {"sku": sku, "id": ident, "price": price}
    return make_record(
        item, sku=sku, id=ident, name=sku, price=price, status=1, type_id="simple",
        updated_at="2026-01-01 00:00:00",
    )  # fmt: skip


async def due_now(leases: PostgresLeases, *names: str) -> None:
    past = await leases.now() - timedelta(seconds=1)
    await leases.ensure(dict.fromkeys(names, (past, None)))


def expire(url: str, source: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE leases SET expires_at = clock_timestamp() - interval '1 second' "
            "WHERE source = %s",
            (source,),
        )


async def test_a_due_source_is_claimed_once_with_a_new_epoch(leases: PostgresLeases) -> None:
    await due_now(leases, "a")
    first = await leases.claim_due(["a"], "r1", 5)
    assert [(lease.source, lease.owner, lease.epoch) for lease in first] == [("a", "r1", 1)]
    assert first[0].expires_at > await leases.now() + timedelta(seconds=25)
    assert await leases.claim_due(["a"], "r2", 5) == []  # held: nobody else gets it
    assert await leases.holder("a") == "r1"


async def test_a_source_not_yet_due_is_not_claimed(leases: PostgresLeases) -> None:
    later = await leases.now() + timedelta(hours=1)
    await leases.ensure({"a": (later, None)})
    assert await leases.claim_due(["a"], "r1", 5) == []


async def test_the_slot_limit_caps_a_claim(leases: PostgresLeases) -> None:
    await due_now(leases, "a", "b", "c")
    assert len(await leases.claim_due(["a", "b", "c"], "r1", 2)) == 2
    assert len(await leases.claim_due(["a", "b", "c"], "r1", 2)) == 1


async def test_renewal_extends_and_release_stores_the_next_run(leases: PostgresLeases) -> None:
    await due_now(leases, "a")
    (lease,) = await leases.claim_due(["a"], "r1", 1)
    renewed = await leases.renew(lease)
    assert renewed is not None and renewed.expires_at >= lease.expires_at
    upcoming = await leases.now() + timedelta(minutes=15)
    assert await leases.release(lease, upcoming)
    (row,) = await leases.leases()
    assert (row.owner, row.live, row.next_run_at) == (None, False, upcoming)
    assert await leases.claim_due(["a"], "r2", 1) == []  # not due until then


async def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_renew_or_release(
    leases: PostgresLeases, postgres_url: str
) -> None:
    await due_now(leases, "a")
    (old,) = await leases.claim_due(["a"], "r1", 1)
    expire(postgres_url, "a")
    assert await leases.renew(old) is None  # an expired lease is never revived
    (new,) = await leases.claim_due(["a"], "r2", 1)
    assert (new.owner, new.epoch, new.previous) == ("r2", old.epoch + 1, "r1")
    assert await leases.release(old, None) is False
    assert await leases.holder("a") == "r2"


async def test_the_fence_refuses_every_write_of_a_stale_epoch(
    store: PostgresStore, leases: PostgresLeases, postgres_url: str
) -> None:
    await due_now(leases, "a")
    (old,) = await leases.claim_due(["a"], "r1", 1)
    stale = store.fenced("a", old.owner, old.epoch)
    run_id = await stale.start_run("a", "full", T0, "r1")
    await stale.commit_page("a", [product("p1")], T0, PageCommit(checkpoint="c1"))
    expire(postgres_url, "a")
    (new,) = await leases.claim_due(["a"], "r2", 1)
    with pytest.raises(LeaseLostError, match="lost to r2"):
        await stale.commit_page("a", [product("p2")], T0, PageCommit(checkpoint="c2"))
    with pytest.raises(LeaseLostError):
        await stale.finish_full_scan("a", 1, T0, tombstone=True, watermark=None)
    with pytest.raises(LeaseLostError):
        await stale.finish_run(run_id, "succeeded", RunTotals(), T0)
    # Nothing of the refused writes is stored: the page, its checkpoint and the run row.
    assert await store.count_products("a") == 1
    assert (await store.source_state("a")).checkpoint == "c1"
    assert (await store.runs("a"))[0].status == "running"
    current = store.fenced("a", new.owner, new.epoch)
    assert await current.fail_abandoned_runs(T0, "owner r1 lost its lease", source="a") == 1
    await current.commit_page("a", [product("p2")], T0, PageCommit(checkpoint="c2"))
    assert await store.count_products("a") == 2


async def test_an_expired_lease_fences_even_before_anyone_takes_it(
    store: PostgresStore, leases: PostgresLeases, postgres_url: str
) -> None:
    await due_now(leases, "a")
    (lease,) = await leases.claim_due(["a"], "r1", 1)
    expire(postgres_url, "a")
    stale = store.fenced("a", lease.owner, lease.epoch)
    with pytest.raises(LeaseLostError, match="lease of a epoch 1 expired at"):
        await stale.commit_page("a", [product("p9")], T0, PageCommit())


async def test_two_claimers_at_once_take_different_sources(
    postgres_url: str, leases: PostgresLeases
) -> None:
    names = [f"s{i:02d}" for i in range(20)]
    await due_now(leases, *names)
    async with PostgresStore(postgres_url) as other_store:
        other = PostgresLeases(other_store, lease_seconds=30)
        got = await asyncio.gather(
            *(
                claimer.claim_due(names, owner, 4)
                for _ in range(3)
                for claimer, owner in ((leases, "r1"), (other, "r2"))
            )
        )
    claimed = [lease.source for batch in got for lease in batch]
    assert len(claimed) == len(set(claimed)) == 20  # every source once, none twice
    assert {lease.epoch for batch in got for lease in batch} == {1}


async def test_claim_now_refuses_a_held_source_naming_its_owner(leases: PostgresLeases) -> None:
    lease = await leases.claim("a", "host:1:t")  # creates the row, whatever the schedule
    assert lease.epoch == 1
    with pytest.raises(SourceBusyError, match=r"being synced by host:1:t \(lease held until"):
        await leases.claim("a", "host:2:t")
    await leases.release(lease, None)
    assert (await leases.claim("a", "host:2:t")).epoch == 2


async def test_replicas_register_beat_and_count_their_leases(
    leases: PostgresLeases, postgres_url: str
) -> None:
    await leases.heartbeat("r1", "h1", 11, T0)
    await leases.heartbeat("r2", "h2", 22, T0 + timedelta(seconds=1))
    await due_now(leases, "a", "b")
    await leases.claim_due(["a", "b"], "r2", 5)
    live = await leases.replicas()
    assert [(r.id, r.host, r.pid, r.sources_held) for r in live] == [
        ("r1", "h1", 11, 0),
        ("r2", "h2", 22, 2),
    ]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE replicas SET heartbeat_at = now() - interval '1 hour' WHERE id='r1'")
    assert [r.id for r in await leases.replicas()] == ["r2"]  # silent for long: gone
    await leases.leave("r2")
    assert await leases.replicas() == []


def test_next_run_coalesces_missed_slots_on_the_interval_grid() -> None:
    every = parse_schedule("10s")
    assert first_run(every, T0) == T0
    assert next_run(every, T0, T0 + timedelta(seconds=3)) == T0 + timedelta(seconds=10)
    # A run that overran three slots runs once, on the grid.
    assert next_run(every, T0, T0 + timedelta(seconds=35)) == T0 + timedelta(seconds=40)
    assert next_run(every, T0, T0 + timedelta(seconds=10)) == T0 + timedelta(seconds=20)


def test_cron_schedules_wait_for_their_slot() -> None:
    hourly = parse_schedule("0 * * * *")
    assert first_run(hourly, T0 + timedelta(minutes=5)) == T0 + timedelta(hours=1)
    assert next_run(hourly, T0, T0 + timedelta(hours=2, minutes=1)) == T0 + timedelta(hours=3)


async def test_a_session_stopped_inside_a_write_is_ended_so_the_source_can_move(
    leases: PostgresLeases, postgres_url: str
) -> None:
    """A replica stopped between its fence and its commit keeps the lease row share-locked:
    claims skip it until the stalled session is ended, then take the source."""
    await due_now(leases, "a")
    (old,) = await leases.claim_due(["a"], "r1", 1)
    stalled = await psycopg.AsyncConnection.connect(postgres_url, application_name="syncd")
    try:
        await stalled.execute("SELECT syncd_fence(%s, %s, %s)", ("a", "r1", old.epoch))
        await stalled.rollback()
        # The lease runs out while the fence's share lock is held (the same lock as above,
        # taken again after the expiry: the fence itself refuses an expired lease).
        expire(postgres_url, "a")
        await stalled.execute("SELECT 1 FROM leases WHERE source = 'a' FOR SHARE")
        assert await leases.claim_due(["a"], "r2", 1) == []  # locked: skipped
        assert await leases.end_stalled_sessions(3600) == 0  # not idle long enough yet
        assert await leases.end_stalled_sessions(0) == 1
        (new,) = await leases.claim_due(["a"], "r2", 1)
        assert (new.owner, new.epoch) == ("r2", old.epoch + 1)
    finally:
        await stalled.close()


async def test_a_release_behind_a_write_stuck_open_gives_up_instead_of_waiting(
    store: PostgresStore, postgres_url: str
) -> None:
    """A session holding the lease row's share lock (a fenced write that never commits) makes
    renewal and release fail within a third of the lease, naming what failed: the job ends and
    the lease expires, rather than the replica hanging on the row."""
    leases = PostgresLeases(store, lease_seconds=0.6)
    await due_now(leases, "a")
    (lease,) = await leases.claim_due(["a"], "r1", 1)
    with psycopg.connect(postgres_url) as stuck:
        stuck.execute("SELECT 1 FROM leases WHERE source = 'a' FOR SHARE")
        with pytest.raises(StoreError, match="release the lease of 'a'"):
            await asyncio.wait_for(leases.release(lease, None), timeout=5)
        with pytest.raises(StoreError, match="renew the lease of 'a'"):
            await asyncio.wait_for(leases.renew(lease), timeout=5)
        stuck.rollback()
    assert await leases.release(lease, None)  # the lock gone, the release goes through

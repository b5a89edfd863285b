"""Leases on PostgreSQL: one owner per source at a time, with a fencing epoch, and the schedule.

Each source has one row in `leases`. A replica claims a due source with `FOR UPDATE SKIP LOCKED`
(two claimers never wait on each other, and never take the same row), which sets the owner,
increments the epoch and sets `expires_at` from the database's clock. The owner renews the lease
while its run goes on and releases it with the run's end, storing the source's next run time.
Every write of the run calls `syncd_fence(source, owner, epoch)` in its own transaction
(PostgresStore.fenced): once another replica has claimed the source, or the lease has expired,
the write is refused with LeaseLostError. All times here come from the database, so the
replicas' clocks need not agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from syncd.errors import SourceBusyError
from syncd.store.postgres import Connection, PostgresStore


@dataclass(frozen=True, slots=True)
class Lease:
    """A claimed source: who holds it, with which fencing epoch, until when (database time).
    `previous` is the owner whose expired lease this claim took over (None after a release)."""

    source: str
    owner: str
    epoch: int
    expires_at: datetime
    previous: str | None = None
    full_due: bool = False
    due_at: datetime | None = None
    """The scheduled time this claim served (the next run is computed on its grid)."""
    full_due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A source's lease as `syncd status` shows it."""

    source: str
    owner: str | None
    epoch: int
    expires_at: datetime | None
    next_run_at: datetime
    next_full_at: datetime | None
    live: bool


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    """A replica as `syncd replicas` lists it."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    sources_held: int


_CLAIM = """
WITH due AS (
    SELECT source, owner FROM leases
    WHERE source = ANY(%(sources)s)
      AND (%(force)s OR next_run_at <= clock_timestamp() OR next_full_at <= clock_timestamp())
      AND (owner IS NULL OR expires_at <= clock_timestamp())
    ORDER BY least(next_run_at, coalesce(next_full_at, next_run_at)), source
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE leases AS l SET
    owner = %(owner)s, epoch = l.epoch + 1, claimed_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(ttl)s),
    last_owner = coalesce(due.owner, l.last_owner), updated_at = clock_timestamp()
FROM due WHERE l.source = due.source
RETURNING l.source, l.epoch, l.expires_at, due.owner,
          coalesce(l.next_full_at <= clock_timestamp(), false), l.next_run_at, l.next_full_at
"""


class PostgresLeases:
    """The leases and replica registry of one PostgreSQL store (tables of schema migration 2)."""

    def __init__(self, store: PostgresStore, lease_seconds: float) -> None:
        self._store = store
        self.lease_seconds = lease_seconds

    async def now(self) -> datetime:
        """The database's clock, which every lease and schedule time is in."""
        rows = await self._store.fetch("SELECT clock_timestamp()")
        return rows[0][0]  # type: ignore[no-any-return]

    async def ensure(self, first_runs: dict[str, tuple[datetime, datetime | None]]) -> None:
        """Give each source (name → first run, first full run) a lease row unless it has one:
        replicas starting together agree, the first insert wins."""
        if not first_runs:
            return
        names = sorted(first_runs)
        async with self._store.session("create the lease rows") as db:
            await db.execute(
                "INSERT INTO leases (source, next_run_at, next_full_at) "
                "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) "
                "ON CONFLICT (source) DO NOTHING",
                (names, [first_runs[n][0] for n in names], [first_runs[n][1] for n in names]),
            )

    async def claim_due(self, sources: Sequence[str], owner: str, limit: int) -> list[Lease]:
        """Claim up to `limit` of `sources` that are due and free (never held, released, or whose
        lease expired), skipping rows another replica is claiming or writing under right now."""
        if limit <= 0 or not sources:
            return []
        return await self._claim(list(sources), owner, limit, force=False)

    async def claim(self, source: str, owner: str) -> Lease:
        """Claim `source` now whatever its schedule (`syncd sync`); SourceBusyError naming the
        holder while another live lease holds it."""
        async with self._store.session(f"create the lease of {source!r}") as db:
            await db.execute(
                "INSERT INTO leases (source, next_run_at) VALUES (%s, clock_timestamp()) "
                "ON CONFLICT (source) DO NOTHING",
                (source,),
            )
        claimed = await self._claim([source], owner, 1, force=True)
        if claimed:
            return claimed[0]
        rows = await self._store.fetch(
            "SELECT owner, expires_at FROM leases WHERE source = %s", (source,)
        )
        holder, until = rows[0] if rows else (None, None)
        until_text = f" until {until.isoformat(timespec='seconds')}" if until else ""
        raise SourceBusyError(
            f"source {source!r} is being synced by {holder or 'another replica'} "
            f"(lease held{until_text}); wait for it to finish"
        )

    async def _claim(self, sources: list[str], owner: str, limit: int, force: bool) -> list[Lease]:
        async with self._store.session("claim sources") as db:
            cursor = await db.execute(
                _CLAIM,
                {"sources": sources, "owner": owner, "limit": limit, "force": force,
                 "ttl": self.lease_seconds},
            )  # fmt: skip
            rows = await cursor.fetchall()
        return [
            Lease(str(r[0]), owner, int(r[1]), r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows
        ]

    async def end_stalled_sessions(self, idle_seconds: float) -> int:
        """End syncd's sessions of this database that have sat inside a transaction for longer
        than `idle_seconds`: a replica stopped mid-write (SIGSTOP, a pause, a partition) keeps
        its fence's share lock on a lease row, which `SKIP LOCKED` claims would skip for as
        long as it stays stopped (each is waited for, up to 2 s). The server's idle_in_transaction_session_timeout does not
        cover a pipelined transaction (it is armed only at a Sync); this does. Returns how many."""
        rows = await self._store.fetch(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 2000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = 'syncd' AND state LIKE 'idle in transaction%%' "
            "AND state_change < clock_timestamp() - make_interval(secs => %s)",
            (idle_seconds,),
        )
        return int(rows[0][0])

    @asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[Connection]:
        """A session whose statements give up (StoreError) instead of waiting without end: an
        update of a lease row waits for the share locks of fenced writes, and a write stuck
        open must cost a renewal or a release (the lease then expires and is taken over),
        never the whole job and with it the replica's stop."""
        wait_ms = str(max(1, int(self.lease_seconds * 1000 / 3)))
        run_ms = str(max(1, int(self.lease_seconds * 1000)))
        async with self._store.session(what) as db:
            await db.execute(
                "SELECT set_config('lock_timeout', %s, true), "
                "set_config('statement_timeout', %s, true)",
                (wait_ms, run_ms),
            )
            yield db

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend `lease` by `lease_seconds` from now; None if it is no longer this owner's (taken
        over, or expired: an expired lease is never revived, its runs' writes are refused)."""
        async with self._bounded(f"renew the lease of {lease.source!r}") as db:
            cursor = await db.execute(
                "UPDATE leases SET expires_at = clock_timestamp() + make_interval(secs => %s), "
                "updated_at = clock_timestamp() WHERE source = %s AND owner = %s AND epoch = %s "
                "AND expires_at > clock_timestamp() RETURNING expires_at",
                (self.lease_seconds, lease.source, lease.owner, lease.epoch),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return dataclasses.replace(lease, expires_at=row[0])

    async def release(
        self, lease: Lease, next_run_at: datetime | None, next_full_at: datetime | None = None
    ) -> bool:
        """Give `lease` up, storing the source's next run times (None keeps the stored one);
        False if it was no longer this owner's (nothing is changed then)."""
        async with self._bounded(f"release the lease of {lease.source!r}") as db:
            cursor = await db.execute(
                "UPDATE leases SET owner = NULL, expires_at = NULL, last_owner = owner, "
                "next_run_at = coalesce(%s, next_run_at), "
                "next_full_at = coalesce(%s, next_full_at), updated_at = clock_timestamp() "
                "WHERE source = %s AND owner = %s AND epoch = %s",
                (next_run_at, next_full_at, lease.source, lease.owner, lease.epoch),
            )
            return cursor.rowcount == 1

    async def holder(self, source: str) -> str | None:
        """The owner of the live lease of `source`, if any."""
        rows = await self._store.fetch(
            "SELECT owner FROM leases WHERE source = %s AND owner IS NOT NULL "
            "AND expires_at > clock_timestamp()",
            (source,),
        )
        return str(rows[0][0]) if rows else None

    async def leases(self) -> list[LeaseRow]:
        """Every source's lease, by source."""
        rows = await self._store.fetch(
            "SELECT source, owner, epoch, expires_at, next_run_at, next_full_at, "
            "owner IS NOT NULL AND expires_at > clock_timestamp() FROM leases ORDER BY source"
        )
        return [LeaseRow(r[0], r[1], int(r[2]), r[3], r[4], r[5], bool(r[6])) for r in rows]

    # -- replicas ---------------------------------------------------------------------------------

    async def heartbeat(self, replica: str, host: str, pid: int, started_at: datetime) -> None:
        """Register `replica`, or note that it is alive (every poll)."""
        async with self._store.session("record the replica's heartbeat") as db:
            await db.execute(
                "INSERT INTO replicas (id, host, pid, started_at, heartbeat_at) "
                "VALUES (%s, %s, %s, %s, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at",
                (replica, host, pid, started_at),
            )

    async def leave(self, replica: str) -> None:
        """Remove `replica` from the registry (a clean stop; a dead one just stops beating)."""
        async with self._store.session("remove the replica") as db:
            await db.execute("DELETE FROM replicas WHERE id = %s", (replica,))

    async def replicas(self, gone_after: float | None = None) -> list[ReplicaRow]:
        """The live replicas: a heartbeat within `gone_after` seconds (three lease periods by
        default), with how many unexpired leases each holds."""
        window = gone_after if gone_after is not None else 3 * self.lease_seconds
        rows = await self._store.fetch(
            "SELECT r.id, r.host, r.pid, r.started_at, r.heartbeat_at, "
            "(SELECT count(*) FROM leases l WHERE l.owner = r.id "
            " AND l.expires_at > clock_timestamp()) "
            "FROM replicas r WHERE r.heartbeat_at > clock_timestamp() - make_interval(secs => %s) "
            "ORDER BY r.started_at, r.id",
            (window,),
        )
        return [ReplicaRow(r[0], r[1], int(r[2]), r[3], r[4], int(r[5])) for r in rows]

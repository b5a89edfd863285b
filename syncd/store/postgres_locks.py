"""Run locks on PostgreSQL: one session-level advisory lock per source, on a connection of its own.

The PostgreSQL counterpart of store/locks.py. Whoever runs a source holds the lock
`pg_try_advisory_lock(key(source))` on a connection opened for that run alone, and the server
drops the lock when that connection ends in any way: the process exits, is killed, or its host
vanishes (once TCP keepalives notice). So, as with the flock files, a `running` row whose source
lock can be taken was abandoned, and this holds across every host that shares the database.

It is liveness, not fencing: a holder cut off from the server loses its lock without knowing.
Runs on PostgreSQL hold leases with fencing epochs instead (postgres_leases.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import psycopg

from syncd.errors import SourceBusyError, StoreError
from syncd.store.postgres import describe, first_line

_APP_PREFIX = "syncd run "


def lock_key(source: str) -> int:
    """The advisory lock key of `source`: a signed 64-bit hash, namespaced by a prefix."""
    digest = hashlib.blake2b(f"syncd.run:{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresRunLocks:
    """The run locks of one PostgreSQL database (`conninfo` as libpq takes it)."""

    def __init__(self, conninfo: str, url: str, *, connect_timeout: float = 10.0) -> None:
        self._conninfo = conninfo
        self._url = url
        self._connect_timeout = connect_timeout

    @asynccontextmanager
    async def hold(self, source: str, owner: str) -> AsyncIterator[None]:
        """Hold the lock of `source` for the block; SourceBusyError naming the holder if taken."""
        async with self.try_hold(source, owner) as held:
            if not held:
                holder = await self.holder(source) or "another process"
                raise SourceBusyError(
                    f"source {source!r} is being synced by {holder}; wait for it to finish"
                )
            yield

    @asynccontextmanager
    async def try_hold(self, source: str, owner: str) -> AsyncIterator[bool]:
        """Hold the lock of `source` for the block if it is free: yields whether it is held."""
        try:
            # The holder's name rides on the connection (pg_stat_activity), for busy messages.
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                application_name=f"{_APP_PREFIX}{owner}"[:63],
                connect_timeout=max(1, int(self._connect_timeout)),
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot take the run lock of {source!r} on {describe(self._url)}: "
                f"{first_line(exc)}"
            ) from exc
        held = False
        try:
            try:
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(source),))
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                raise StoreError(
                    f"cannot take the run lock of {source!r}: {first_line(exc)}"
                ) from exc
            held = bool(row and row[0])
            yield held
        finally:
            # Closing the connection would release the lock too, but only once the server's
            # backend has exited, after close() returns: the source's next run, right after,
            # could find it still held. The unlock's answer says it is free; closing stays the
            # safety net should the unlock fail.
            if held:
                with suppress(psycopg.Error):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(source),))
            await conn.close()

    async def holder(self, source: str) -> str | None:
        """The owner of the connection that holds the lock of `source` (for messages)."""
        key = lock_key(source)
        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True
            ) as conn:
                cursor = await conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                    ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
                )
                row = await cursor.fetchone()
        except psycopg.Error:
            return None
        if row is None or not row[0]:
            return None
        return str(row[0]).removeprefix(_APP_PREFIX)

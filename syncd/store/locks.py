"""Run locks: one advisory `flock` lock per source, on a file beside the database.

Whoever runs a source holds its lock for the whole run, and the kernel drops the lock when that
process ends in any way, SIGKILL and the OOM killer included. So a `running` row whose source lock
can be taken was abandoned, and a held lock is a live run. No pid or hostname guesswork: a
restarted container gives syncd the same pid again, and a new container has a new hostname.

`flock` locks belong to an open file, not to a process, so two holders in one process conflict
just as two processes do. They hold between all processes of one host that open the same file,
containers sharing a volume included; not between hosts over NFS, where SQLite's WAL mode (which
needs shared memory) does not work either.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from syncd.errors import SourceBusyError, StoreError

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class SourceLocks:
    """The run locks of one database: `<database>-locks/<source>.lock`, each holding its owner."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def beside(cls, database: Path) -> SourceLocks:
        """The locks of the database file `database` (named like SQLite's own -wal and -shm)."""
        return cls(database.with_name(f"{database.name}-locks"))

    def path(self, source: str) -> Path:
        """The lock file of `source`."""
        # Source names are validated by the settings; a name that could leave the directory
        # must never reach the filesystem even if that validation is bypassed.
        if not source or not set(source) <= _SAFE:
            raise ValueError(f"source name {source!r} cannot name a lock file")
        return self.directory / f"{source}.lock"

    @asynccontextmanager
    async def hold(self, source: str, owner: str) -> AsyncIterator[None]:
        """Hold the lock of `source` for the block; SourceBusyError naming the holder if taken."""
        async with self.try_hold(source, owner) as held:
            if not held:
                holder = self.holder(source) or "another process"
                raise SourceBusyError(
                    f"source {source!r} is being synced by {holder}; wait for it to finish"
                )
            yield

    @asynccontextmanager
    async def try_hold(self, source: str, owner: str) -> AsyncIterator[bool]:
        """Hold the lock of `source` for the block if it is free: yields whether it is held."""
        fd = self._acquire(source, owner)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def holder(self, source: str) -> str | None:
        """The owner written by the last process that took the lock of `source` (for messages)."""
        try:
            text = self.path(source).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return text or None

    def _acquire(self, source: str, owner: str) -> int | None:
        """The locked file descriptor, or None if another open file holds the lock.

        Synchronous on purpose: open() and a non-blocking flock() on a local file return at once,
        and a lock taken in a worker thread would leak if the awaiting task were cancelled.
        """
        path = self.path(source)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the run lock {str(path)!r}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot take the run lock {str(path)!r}: {exc.strerror}") from exc
        # Who holds it, for the busy message of whoever is refused; not needed for correctness.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{owner}\n".encode(), 0)
        return fd

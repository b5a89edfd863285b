"""Which backend a configuration selects: `[store] url` means PostgreSQL, otherwise SQLite at `path`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from syncd.config.feed import ChangesSettings
from syncd.config.settings import StoreSettings
from syncd.redaction import Redactor
from syncd.store.locks import SourceLocks
from syncd.store.postgres import PostgresStore, conninfo, describe
from syncd.store.postgres_locks import PostgresRunLocks
from syncd.store.sqlite import SqliteStore

AnyStore = SqliteStore | PostgresStore
"""An opened store of either backend (both implement the `Store` protocol)."""


class RunLocks(Protocol):
    """One run lock per source whose holder's death frees it (flock files, or PostgreSQL
    advisory locks). Runs on PostgreSQL hold leases with fencing instead (postgres_leases.py)."""

    def hold(self, source: str, owner: str) -> AbstractAsyncContextManager[None]:
        """Hold the lock of `source` for the block; SourceBusyError naming the holder if taken."""
        ...

    def try_hold(self, source: str, owner: str) -> AbstractAsyncContextManager[bool]:
        """Hold the lock of `source` for the block if it is free: yields whether it is held."""
        ...


def open_store(
    settings: StoreSettings,
    *,
    redactor: Redactor | None = None,
    changes: ChangesSettings | None = None,
    idle_in_transaction: float | None = None,
) -> AbstractAsyncContextManager[AnyStore]:
    """The store `settings` select, not yet opened: use it as `async with open_store(...)`.
    Free text it stores (run errors, event details) passes through `redactor` first; `changes`
    says whether product writes append to the change feed (docs/CHANGES.md); on PostgreSQL a
    session idle inside a transaction for `idle_in_transaction` seconds is ended by the server."""
    changes = changes or ChangesSettings()
    if settings.url is not None:
        password = settings.password.get_secret_value() if settings.password else None
        return PostgresStore(
            settings.url,
            password=password,
            pool_size=settings.pool_size,
            redactor=redactor,
            idle_in_transaction=idle_in_transaction,
            changes=changes.enabled,
            change_payloads=changes.store_payloads,
        )
    return SqliteStore(
        settings.path,
        busy_timeout=settings.busy_timeout,
        redactor=redactor,
        changes=changes.enabled,
        change_payloads=changes.store_payloads,
    )


def run_locks(settings: StoreSettings) -> RunLocks:
    """The run locks that go with the store `settings` select."""
    if settings.url is not None:
        password = settings.password.get_secret_value() if settings.password else None
        return PostgresRunLocks(conninfo(settings.url, password), settings.url)
    return SourceLocks.beside(settings.path)


def store_name(settings: StoreSettings) -> str:
    """The selected database for messages: the SQLite path, or the URL without a password."""
    if settings.url is not None:
        return describe(settings.url)
    return str(settings.path)


__all__ = ["AnyStore", "RunLocks", "open_store", "run_locks", "store_name"]

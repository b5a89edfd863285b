"""Persistence: the `Store` protocol, its records, and the SQLite backend."""

from syncd.store.base import (
    CLEAR,
    PageCommit,
    ProductRecord,
    RunProgress,
    RunRecord,
    RunTotals,
    SourceState,
    Store,
    TokenEvent,
    TokenRecord,
    UpsertCounts,
)
from syncd.store.locks import SourceLocks
from syncd.store.sqlite import SqliteStore

__all__ = [
    "CLEAR",
    "PageCommit",
    "ProductRecord",
    "RunProgress",
    "RunRecord",
    "RunTotals",
    "SourceLocks",
    "SourceState",
    "SqliteStore",
    "Store",
    "TokenEvent",
    "TokenRecord",
    "UpsertCounts",
]

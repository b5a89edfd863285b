"""Persistence: the `Store` protocol, its records, and the SQLite backend."""

from syncd.store.base import (
    CLEAR,
    CallWindowState,
    PageCommit,
    ProductRecord,
    RateSearch,
    RunProgress,
    RunRecord,
    RunTotals,
    SourceRate,
    SourceState,
    Store,
    TokenEvent,
    TokenRecord,
    TokenState,
    UpsertCounts,
)
from syncd.store.locks import SourceLocks
from syncd.store.sqlite import SqliteStore

__all__ = [
    "CLEAR",
    "CallWindowState",
    "PageCommit",
    "ProductRecord",
    "RateSearch",
    "RunProgress",
    "RunRecord",
    "RunTotals",
    "SourceLocks",
    "SourceRate",
    "SourceState",
    "SqliteStore",
    "Store",
    "TokenEvent",
    "TokenRecord",
    "TokenState",
    "UpsertCounts",
]

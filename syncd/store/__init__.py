"""Persistence: the `Store` protocol, its records, and the SQLite backend."""

from syncd.store.base import (
    ProductRecord,
    RunRecord,
    RunTotals,
    SourceState,
    Store,
    TokenEvent,
    TokenRecord,
    UpsertCounts,
)
from syncd.store.sqlite import SqliteStore

__all__ = [
    "ProductRecord",
    "RunRecord",
    "RunTotals",
    "SourceState",
    "SqliteStore",
    "Store",
    "TokenEvent",
    "TokenRecord",
    "UpsertCounts",
]

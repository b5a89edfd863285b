"""What the sync engine asks of a platform adapter, and the page it gets back."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from syncd.codec import NestingError, canonical_bytes
from syncd.errors import SourceError
from syncd.http.stats import RequestStats
from syncd.store import ProductRecord


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where an incremental read stands, in (updated_at, id) order.

    By default: products updated at or after `since` (inclusive). `exclusive`: strictly after
    `since`. `after_id`: after the product (`since`, `after_id`) in that order (Adobe Commerce
    reads the rest in one keyset; AmeriCommerce finishes that millisecond first, then goes on
    `exclusive`). `offset`: pages to skip, for platforms that cannot filter by id. A run always
    starts from a plain `Cursor(watermark - overlap)`.
    """

    since: datetime
    offset: int = 0
    after_id: int | None = None
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """One page of products as fetched.

    `number` is the page's position in a full read (1-based); `total_count` is what the platform
    reported with this page (a change between pages means the catalog changed under the read);
    `expected_pages` is the adapter's estimate of the page count; `cursor` (incremental reads only)
    is where the next read must start once this page is committed.
    """

    number: int
    records: list[ProductRecord]
    total_count: int | None = None
    expected_pages: int | None = None
    cursor: Cursor | None = None


class Source(Protocol):
    """A platform adapter: streams a store's catalog as pages, never holding the whole catalog."""

    @property
    def name(self) -> str:
        """The configured source name."""
        ...

    @property
    def page_size(self) -> int:
        """Products per page, as configured."""
        ...

    def full_pages(
        self, stats: RequestStats, skip: frozenset[int] = frozenset()
    ) -> AsyncIterator[Page]:
        """Every product, page by page in any order, sorted by a stable id on the platform side;
        pages whose numbers are in `skip` (committed by an interrupted run) are not fetched."""
        ...

    def changed_pages(self, stats: RequestStats, cursor: Cursor) -> AsyncIterator[Page]:
        """Products with `updated_at >= cursor.since`, in (updated_at, id) order, sequentially,
        each page carrying the cursor that follows it (keyset paging: immune to shifting offsets)."""
        ...


class ListingIncomplete(SourceError):
    """The sku listing ended before it accounted for every product (a page came back empty or
    short while its `total_count` said more remained): no deletion may be concluded from it."""


@dataclass(frozen=True, slots=True)
class CatalogProbe:
    """The catalog as one small request sees it: `total` products now, and whether one of them
    was created at or after the moment asked about (`created_since`; True when the store cannot
    tell)."""

    total: int
    created_since: bool

    @classmethod
    def of(
        cls, total: int, newest: datetime | None, floor: datetime, *, empty: bool
    ) -> CatalogProbe:
        """What a probe answer says: `newest` is the newest product's `created_at` (None if it
        had none the source could read, which counts as new), `floor` the moment asked about at
        the store's resolution; an `empty` answer with products in it cannot tell either."""
        if empty:
            return cls(total, created_since=total > 0)
        return cls(total, created_since=newest is None or newest >= floor)


@runtime_checkable
class VerifiableSource(Source, Protocol):
    """A source that can list its skus cheaply in an order no deletion can shift (a keyset), and
    tell in one request whether its catalog gained or lost products since a moment."""

    async def probe(self, stats: RequestStats, since: datetime) -> CatalogProbe:
        """`total_count` now and whether a product created at or after `since` exists, from the
        newest product by `created_at` (one request, one trimmed item)."""
        ...

    def list_skus(self, stats: RequestStats) -> AsyncIterator[list[str]]:
        """Every sku of the store, a page at a time, by id keyset, without payloads."""
        ...

    async def fetch_skus(self, stats: RequestStats, skus: Sequence[str]) -> list[ProductRecord]:
        """The full products for `skus` (those that still exist)."""
        ...


def content_hash(item: Mapping[str, Any]) -> str:
    """Hash of the item's content, independent of key order, to tell real changes from re-reads."""
    return hashlib.sha256(canonical_bytes(item)).hexdigest()


def make_record(
    item: Mapping[str, Any],
    sku: str,
    id: int | None,
    name: str | None,
    price: float | None,
    status: int | None,
    type_id: str | None,
    updated_at: str | None,
) -> ProductRecord:
    """A store record whose payload is the item's canonical JSON (sorted keys, compact): the very
    bytes its content hash is taken over, so key order never counts as a change."""
    try:
        # One serialisation serves both: the payload and the hash, which the stored rows'
        # hashes were always taken over (so an upgrade rewrites nothing).
        canonical = canonical_bytes(item)
    except NestingError as exc:
        raise SourceError(f"product {sku!r}: its JSON is {exc}") from None
    # Positional, here and by the callers: once per product, keyword arguments cost measurably.
    return ProductRecord(
        sku, id, name, price, status, type_id, updated_at, canonical.decode(),
        hashlib.sha256(canonical).hexdigest(),
    )  # fmt: skip


def checked_envelope(items: list[Any], raw_total: Any, where: str, noun: str) -> int:
    """`total_count` of a list answer, after checking it is a whole number of 0 or more and that
    every item is a JSON object; SourceError starting with `where` (URL and request) otherwise."""
    total = None if isinstance(raw_total, bool) else as_int(raw_total)
    if total is None or total < 0:
        raise SourceError(f"{where} has no integer total_count (got {raw_total!r:.40})")
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise SourceError(f"{where}: {noun} {n} is {type(item).__name__}, not a JSON object")
    return total


_MAX_DIGITS = 30


def believable_total(total: int, most: int, source: str, where: str) -> int:
    """`total` if at most `most` (the source's `max_catalog_size`); else a SourceError, so that a
    runaway `total_count` never becomes millions of page requests (or of page numbers)."""
    if total > most:
        raise SourceError(
            f"source {source!r}: total_count {total} is above max_catalog_size ({most}), "
            f"answered by {where}; no further page is fetched: raise max_catalog_size if the "
            "catalog is really this large"
        )
    return total


def as_int(value: Any) -> int | None:
    """`value` as an int if it is one (or a numeric string), else None."""
    if type(value) is int:  # the usual case first: a few calls per product
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        digits = value.strip()
        digits = digits.removeprefix("-")
        # ASCII digits only ("²".isdigit() is true, and int() refuses it), and not so many
        # that int() refuses them either (CPython's 4300-digit limit).
        if digits.isascii() and digits.isdigit() and len(digits) <= _MAX_DIGITS:
            return int(value)
    return None


def as_float(value: Any) -> float | None:
    """`value` as a float if it is numeric, else None."""
    if type(value) is float:  # the usual case first
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None

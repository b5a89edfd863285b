"""AmeriCommerce products: `GET /api/v1/products` paged by `page` and `count`, 404 past the end.

Requests carry `X-AC-Auth-Token` (the client's auth) and `Cache-Control: no-cache` (the client's
headers: without it the store answers GETs from its cache, and a sync would store stale pages). The
request paths, filters and envelope are in `americommerce_query`; the design is in docs/SYNC.md.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from typing import Any

from syncd.config import AmeriCommerceSourceSettings
from syncd.errors import SourceError
from syncd.http import RequestStats, SourceClient
from syncd.logging import get_logger
from syncd.sources.americommerce_query import (
    any_of,
    batches,
    changed_params,
    filterable,
    format_ac_time,
    full_params,
    listing_params,
    next_cursor,
    parse_ac_time,
    probe_params,
)
from syncd.sources.base import (
    CatalogProbe,
    Cursor,
    ListingIncomplete,
    Page,
    as_float,
    as_int,
    believable_total,
    checked_envelope,
    make_record,
)
from syncd.sources.fanout import fetch_concurrently
from syncd.store import ProductRecord

log = get_logger(__name__)

PRODUCTS_PATH = "/api/v1/products"
_PAST_THE_END = frozenset({404})


def to_record(item: Mapping[str, Any], naive_offset: timezone | None) -> ProductRecord:
    """Map one AmeriCommerce product: sku = `item_number`, status = `product_status_id`, no
    type_id, `updated_at` normalised to UTC (`2025-06-01T12:00:00.250Z`); ValueError if unusable."""
    sku = item.get("item_number")
    if not isinstance(sku, str) or not sku:
        raise ValueError(f"a product without an item_number was returned (id={item.get('id')!r})")
    updated = item.get("updated_at")
    stamp: str | None = None
    if updated is not None:
        if not isinstance(updated, str):
            raise ValueError(f"product {sku!r}: updated_at {updated!r} is not a datetime string")
        try:
            stamp = format_ac_time(parse_ac_time(updated, naive_offset))
        except ValueError as exc:
            raise ValueError(f"product {sku!r}: updated_at {exc}") from None
    name = item.get("item_name")
    return make_record(
        item,
        sku,
        as_int(item.get("id")),
        name if isinstance(name, str) else None,
        as_float(item.get("price")),
        as_int(item.get("product_status_id")),
        None,
        stamp,
    )


def _is_api_error(data: Any, status: int) -> bool:
    """The API's own error body (`{status_code, message, details}`), not a proxy's or a router's."""
    return isinstance(data, dict) and as_int(data.get("status_code")) == status


class AmeriCommerceSource:
    """Streams an AmeriCommerce catalog: page 1 tells `total_count`, the rest come concurrently."""

    def __init__(self, settings: AmeriCommerceSourceSettings, client: SourceClient) -> None:
        self._settings = settings
        self._client = client
        self._url = str(settings.base_url).rstrip("/") + PRODUCTS_PATH
        offset = settings.naive_time_offset
        self._naive = None if offset is None else timezone(timedelta(minutes=offset))
        # sku -> id of the last sku-listing page, so `fetch_skus` can ask by id (any sku works).
        self._listed: dict[str, int] = {}

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._settings.name

    @property
    def page_size(self) -> int:
        """The `count` parameter."""
        return self._settings.page_size

    async def _get(
        self, params: dict[str, str], stats: RequestStats, what: str
    ) -> dict[str, Any] | None:
        """The list envelope of one request, or None when the store says the page does not exist."""
        response = await self._client.get_json(self._url, params, stats=stats, accept=_PAST_THE_END)
        data = response.data
        if response.status == 404:
            if _is_api_error(data, 404):
                return None
            raise SourceError(
                f"source {self.name!r}: {what} of {self._url} answered HTTP 404 without the API's "
                "error body (is base_url an AmeriCommerce store?)"
            )
        if not isinstance(data, dict) or not isinstance(data.get("products"), list):
            raise SourceError(
                f"source {self.name!r}: {what} of {self._url} has no 'products' list "
                "(is base_url an AmeriCommerce store?)"
            )
        where = f"source {self.name!r}: {what} of {self._url}"
        total = checked_envelope(data["products"], data.get("total_count"), where, "product")
        most = self._settings.max_catalog_size
        believable_total(total, most, self.name, f"{what} of {self._url}")
        return data

    async def _list(
        self, params: dict[str, str], stats: RequestStats, what: str
    ) -> tuple[list[ProductRecord], int] | None:
        """Records and `total_count` of one request (None: past the end)."""
        data = await self._get(params, stats, what)
        if data is None:
            return None
        return [self._record(item) for item in data["products"]], int(data["total_count"])

    def _record(self, item: Any) -> ProductRecord:
        try:
            return to_record(item, self._naive)
        except ValueError as exc:
            raise SourceError(f"source {self.name!r}: {exc}") from None

    async def full_pages(
        self, stats: RequestStats, skip: frozenset[int] = frozenset()
    ) -> AsyncIterator[Page]:
        """Page 1 (for `total_count`), then the other pages not in `skip`, fetched concurrently.

        A later page answering 404 means the catalog shrank under the scan: it ends paging, and
        the empty page reports the most the catalog can now hold, which tells the engine that the
        catalog changed (so it verifies before tombstoning).
        """
        size = self.page_size
        first = await self._list(full_params(1, size), stats, "page 1")
        if first is None:
            raise SourceError(
                f"source {self.name!r}: page 1 of {self._url} answered 404 ('no such page'); a "
                "full scan cannot tell an empty store from a wrong address, so nothing is "
                "concluded: check base_url"
            )
        records, total = first
        if len(records) < min(size, total):
            raise SourceError(
                f"source {self.name!r}: asked for count={size} but the store returned "
                f"{len(records)} of {total} products on page 1; the store caps count, set "
                f"page_size to at most {len(records)}"
            )
        page_count = max(1, math.ceil(total / size))
        if 1 not in skip:
            yield Page(1, records, total, page_count)

        async def fetch(number: int) -> Page:
            got = await self._list(full_params(number, size), stats, f"page {number}")
            if got is None:
                log.info("americommerce.past_the_end", page=number, total_at_start=total)
                return Page(number, [], (number - 1) * size, page_count)
            return Page(number, got[0], got[1], page_count)

        todo = (n for n in range(2, page_count + 1) if n not in skip)
        if page_count > 1:
            # Closed on exit, so a consumer that stops early stops the page workers too.
            async with aclosing(
                fetch_concurrently(todo, fetch, self._settings.max_concurrency, self.name)
            ) as pages:
                async for page in pages:
                    yield page

    async def changed_pages(self, stats: RequestStats, cursor: Cursor) -> AsyncIterator[Page]:
        """Products updated at or after `cursor.since`, one keyset page after the other.

        Once as many distinct products were read as the first answer's `total_count`, the read
        stops (products changed meanwhile sort after the cursor and are the next run's). Whether
        more remain is told by each answer's `total_count`, not by a full page, so a store that
        caps `count` still reads everything.
        """
        size = self.page_size
        expected: int | None = None
        seen: set[str] = set()
        number = 0
        while True:
            number += 1
            got = await self._list(changed_params(cursor, size), stats, "a keyset page")
            records, total = got if got is not None else ([], 0)
            expected = total if expected is None else expected
            seen.update(record.sku for record in records)
            more = total > len(records)
            following = next_cursor(cursor, records, more)
            yield Page(number, records, total, None, following)
            inside_ms = cursor.after_id is not None or following.after_id is not None
            if len(seen) >= expected or (not more and not inside_ms):
                return
            if following == cursor:
                return  # nothing newer and nothing left in this millisecond
            cursor = following

    async def list_skus(self, stats: RequestStats) -> AsyncIterator[list[str]]:
        """Every sku, by id keyset (`id=gt:`), trimmed to id and item_number (`fields`)."""
        size = self.page_size
        after = 0
        while True:
            data = await self._get(listing_params(after, size), stats, "the sku listing")
            items = [] if data is None else data["products"]
            pairs = [self._listed_pair(item) for item in items]
            self._listed = dict(pairs)
            yield [sku for sku, _ in pairs]
            remaining = 0 if data is None else int(data["total_count"])
            if remaining <= len(pairs):
                return
            if len(pairs) < size:
                raise ListingIncomplete(
                    f"source {self.name!r}: the sku listing after id {after} held {len(pairs)} "
                    f"products of {size} asked while total_count said {remaining} remained"
                )
            last = max(ident for _, ident in pairs)
            if last <= after:
                raise SourceError(
                    f"source {self.name!r}: the sku listing asked for id=gt:{after} and got ids up "
                    f"to {last}; the store ignored the filter, so the listing cannot advance"
                )
            after = last

    def _listed_pair(self, item: Any) -> tuple[str, int]:
        sku = item.get("item_number") if isinstance(item, dict) else None
        ident = as_int(item.get("id")) if isinstance(item, dict) else None
        if not isinstance(sku, str) or not sku or ident is None:
            raise SourceError(
                f"source {self.name!r}: the sku listing returned {item!r}; expected an object "
                "with an integer id and a non-empty item_number"
            )
        return sku, ident

    async def probe(self, stats: RequestStats, since: datetime) -> CatalogProbe:
        """`total_count` now, and whether the newest product (`sort=-created_at`) is from `since`
        on, compared in whole milliseconds as the store keeps them."""
        data = await self._get(probe_params(), stats, "the catalog probe")
        if data is None:
            raise SourceError(
                f"source {self.name!r}: the catalog probe of {self._url} answered 404 for page "
                "1; nothing is concluded from it: check base_url"
            )
        total, items = int(data["total_count"]), data["products"]
        newest = items[0].get("created_at") if items else None
        try:
            created = parse_ac_time(newest, self._naive) if isinstance(newest, str) else None
        except ValueError:
            created = None
        floor = since - timedelta(microseconds=since.microsecond % 1000)
        return CatalogProbe.of(total, created, floor, empty=not items)

    async def fetch_skus(self, stats: RequestStats, skus: Sequence[str]) -> list[ProductRecord]:
        """The full products for `skus`: by id when the last listing page gave it (`id=eq:a OR
        eq:b`), else by item number; a batch per request, within one URL's length."""
        ids = [str(self._listed[sku]) for sku in skus if sku in self._listed]
        rest = [sku for sku in skus if sku not in self._listed]
        plain = [sku for sku in rest if filterable(sku)]
        for sku in (sku for sku in rest if not filterable(sku)):
            log.warning(
                "americommerce.sku_not_fetchable",
                sku=sku,
                reason="the filter syntax would split it; the next full scan reads it",
            )
        records: list[ProductRecord] = []
        for field, values in (("id", ids), ("item_number", plain)):
            for batch in batches(values, self.page_size):
                got = await self._list(any_of(field, batch), stats, f"a batch of {field}s")
                found, total = got if got is not None else ([], 0)
                if total > len(found):
                    raise SourceError(
                        f"source {self.name!r}: asked for {len(batch)} products by {field} and got "
                        f"{len(found)} of {total}; the store caps count below page_size"
                    )
                records.extend(found)
        return records

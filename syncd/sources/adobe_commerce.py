"""Adobe Commerce (Magento 2 REST) products: `GET /rest/V1/products` paged by `searchCriteria`."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from syncd.config import AdobeCommerceSourceSettings
from syncd.errors import AuthError, HttpStatusError, NeedsReauthError, SourceError, SyncdError
from syncd.http import RequestStats, SourceClient, error_text
from syncd.logging import get_logger
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
from syncd.sources.keyset import SPLIT_FROM, IdRange, KeysetAnswer, halves, read_ranges
from syncd.store import ProductRecord

log = get_logger(__name__)


MAGENTO_TIME = "%Y-%m-%d %H:%M:%S"
# Magento's input processor answers a refused searchCriteria with 400 and a JSON body.
_REFUSED = frozenset({400})
# What to check when the store refuses an integration's credential (IMS errors speak for themselves).
_REFUSED_CREDENTIAL_HINTS = {
    "bearer": (
        "check auth.access_token (the integration's Access Token); a store before 2.4.4, or one "
        "where Stores > Configuration > Services > OAuth > Consumer Settings > 'Allow OAuth "
        "Access Tokens to be used as standalone Bearer tokens' is No, refuses it as a bearer "
        'token: enable that, or set auth.kind = "oauth1" with the integration\'s four credentials'
    ),
    "oauth1": (
        "check auth.consumer_key, consumer_secret, access_token and access_token_secret against "
        "the integration (System > Extensions > Integrations), that it is active with access to "
        "Magento_Catalog::products, and that base_url is the URL the store sees (it is signed)"
    ),
}


def full_params(page: int, page_size: int) -> dict[str, str]:
    """Offset paging in a total order (entity_id): Magento has none by default, so pages would overlap."""
    return {
        "searchCriteria[pageSize]": str(page_size),
        "searchCriteria[currentPage]": str(page),
        "searchCriteria[sortOrders][0][field]": "entity_id",
        "searchCriteria[sortOrders][0][direction]": "ASC",
    }


def changed_params(cursor: Cursor, page_size: int, ids: IdRange = (None, None)) -> dict[str, str]:
    """Keyset paging in (updated_at, entity_id) order, strictly after `cursor` (see `Cursor`).

    After a product (T, ID) the filter is the keyset in conjunctive form, as searchCriteria
    wants it: group 0 `updated_at gteq T` AND group 1 (`updated_at gt T` OR `entity_id gt ID`).
    Filters in one group are ORed, groups ANDed, and Magento's filter processor ORs filters on
    different fields within a group, so no product is read twice and none is skipped. `ids`
    narrows the read to an entity-id range (above the first bound, up to the second), a group
    per bound.
    """
    when = format_magento_time(cursor.since)
    prefix = "searchCriteria[filter_groups]"
    params = {
        f"{prefix}[0][filters][0][field]": "updated_at",
        f"{prefix}[0][filters][0][value]": when,
        f"{prefix}[0][filters][0][condition_type]": "gt" if cursor.exclusive else "gteq",
    }
    if cursor.after_id is not None:
        params.update(
            {
                f"{prefix}[1][filters][0][field]": "updated_at",
                f"{prefix}[1][filters][0][value]": when,
                f"{prefix}[1][filters][0][condition_type]": "gt",
                f"{prefix}[1][filters][1][field]": "entity_id",
                f"{prefix}[1][filters][1][value]": str(cursor.after_id),
                f"{prefix}[1][filters][1][condition_type]": "gt",
            }
        )
    group = 1 + (cursor.after_id is not None)
    for bound, condition in zip(ids, ("gt", "lteq"), strict=True):
        if bound is not None:  # one group each: groups are ANDed
            params.update(
                {
                    f"{prefix}[{group}][filters][0][field]": "entity_id",
                    f"{prefix}[{group}][filters][0][value]": str(bound),
                    f"{prefix}[{group}][filters][0][condition_type]": condition,
                }
            )
            group += 1
    params.update(
        {
            "searchCriteria[sortOrders][0][field]": "updated_at",
            "searchCriteria[sortOrders][0][direction]": "ASC",
            "searchCriteria[sortOrders][1][field]": "entity_id",
            "searchCriteria[sortOrders][1][direction]": "ASC",
            "searchCriteria[pageSize]": str(page_size),
            "searchCriteria[currentPage]": str(cursor.offset + 1),
        }
    )
    return params


def listing_params(after_id: int, page_size: int) -> dict[str, str]:
    """Skus only (Magento's `fields`), ids after `after_id` in id order: a keyset listing."""
    return {
        "searchCriteria[filter_groups][0][filters][0][field]": "entity_id",
        "searchCriteria[filter_groups][0][filters][0][value]": str(after_id),
        "searchCriteria[filter_groups][0][filters][0][condition_type]": "gt",
        "searchCriteria[sortOrders][0][field]": "entity_id",
        "searchCriteria[sortOrders][0][direction]": "ASC",
        "searchCriteria[pageSize]": str(page_size),
        "searchCriteria[currentPage]": "1",
        "fields": "items[id,sku],total_count",
    }


def probe_params() -> dict[str, str]:
    """The newest product by `created_at`, trimmed to id, sku and created_at, and `total_count`."""
    return {
        "searchCriteria[sortOrders][0][field]": "created_at",
        "searchCriteria[sortOrders][0][direction]": "DESC",
        "searchCriteria[pageSize]": "1",
        "searchCriteria[currentPage]": "1",
        "fields": "items[id,sku,created_at],total_count",
    }


def highest_id_params() -> dict[str, str]:
    """The product with the highest `entity_id`, trimmed to its id, and `total_count`."""
    return {
        "searchCriteria[sortOrders][0][field]": "entity_id",
        "searchCriteria[sortOrders][0][direction]": "DESC",
        "searchCriteria[pageSize]": "1",
        "searchCriteria[currentPage]": "1",
        "fields": "items[id],total_count",
    }


def skus_params(skus: Sequence[str]) -> dict[str, str]:
    """The products whose sku is one of `skus` (Magento's `in` takes a comma-separated list)."""
    return {
        "searchCriteria[filter_groups][0][filters][0][field]": "sku",
        "searchCriteria[filter_groups][0][filters][0][value]": ",".join(skus),
        "searchCriteria[filter_groups][0][filters][0][condition_type]": "in",
        "searchCriteria[sortOrders][0][field]": "entity_id",
        "searchCriteria[sortOrders][0][direction]": "ASC",
        "searchCriteria[pageSize]": str(len(skus)),
        "searchCriteria[currentPage]": "1",
    }


def magento_message(body: Any) -> str:
    """Magento's error `message` with its placeholders filled from `parameters`, as its Phrase
    renders them (`%max` by name, `%1` by position), cut to one short line."""
    text = error_text(body)
    if text is None:
        return json.dumps(body)[:300] if body is not None else "no error message"
    return text[:300]


def format_magento_time(moment: datetime) -> str:
    """Magento's `updated_at` form: 'YYYY-MM-DD HH:MM:SS', UTC."""
    return moment.astimezone(UTC).strftime(MAGENTO_TIME)


def parse_magento_time(text: str | None) -> datetime | None:
    """Inverse of `format_magento_time`; None if absent or malformed."""
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], MAGENTO_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def next_cursor(cursor: Cursor, records: list[ProductRecord]) -> Cursor:
    """Where the keyset read continues after `records` (the page read at `cursor`): strictly
    after its last product in (updated_at, entity_id) order. Offsets are never used, so an
    update in the middle of the read cannot shift a product out of view."""
    if not records:
        return cursor
    last = records[-1]
    last_time = parse_magento_time(last.updated_at)
    if last_time is None or last.id is None:
        # Not a Magento product as documented; an inclusive restart at least misses nothing.
        return Cursor(last_time or cursor.since)
    return Cursor(last_time, after_id=last.id)


def to_record(item: Mapping[str, Any]) -> ProductRecord:
    """Map one Magento product to a store record."""
    get = item.get
    sku = get("sku")
    if not isinstance(sku, str) or not sku:
        raise SourceError(f"a product without a sku was returned (id={get('id')!r})")
    ident, name, price, status = get("id"), get("name"), get("price"), get("status")
    type_id, updated = get("type_id"), get("updated_at")
    # The usual types tested inline, the rest converted: once per product, a call each costs.
    return make_record(
        item,
        sku,
        ident if type(ident) is int else as_int(ident),
        name if isinstance(name, str) else None,
        price if type(price) is float else as_float(price),
        status if type(status) is int else as_int(status),
        type_id if isinstance(type_id, str) else None,
        updated if isinstance(updated, str) else None,
    )


class AdobeCommerceSource:
    """Streams a Magento catalog: page 1 tells `total_count`, the rest are fetched concurrently."""

    def __init__(self, settings: AdobeCommerceSourceSettings, client: SourceClient) -> None:
        self._settings = settings
        self._client = client
        self._url = settings.rest_prefix + "/V1/products"

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._settings.name

    @property
    def page_size(self) -> int:
        """searchCriteria[pageSize]."""
        return self._settings.page_size

    async def _fetch(
        self, page: int, stats: RequestStats, params: dict[str, str] | None = None, what: str = ""
    ) -> tuple[list[ProductRecord], int]:
        items, total = await self._envelope(
            params or full_params(page, self.page_size), stats, what or f"page {page}"
        )
        return [to_record(item) for item in items], total

    async def _envelope(
        self, params: dict[str, str], stats: RequestStats, what: str
    ) -> tuple[list[dict[str, Any]], int]:
        """The `items` (each a JSON object) and `total_count` of one search answer; anything else
        is a SourceError naming the URL and which request it was."""
        try:
            response = await self._client.get_json(self._url, params, stats=stats, accept=_REFUSED)
        except AuthError as error:
            hint = _REFUSED_CREDENTIAL_HINTS.get(self._settings.auth.kind)
            if hint is None or error.status != 401 or isinstance(error, NeedsReauthError):
                raise
            raise AuthError(f"{error}; {hint}", source=error.source, status=401) from None
        data = response.data
        if response.status == 400:
            raise self._refused(data)
        where = f"source {self.name!r}: {self._url} {what}"
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise SourceError(
                f"{where} has no 'items' list (is base_url an Adobe Commerce REST endpoint?)"
            )
        total = checked_envelope(items, data.get("total_count"), where, "item")
        most = self._settings.max_catalog_size
        return items, believable_total(total, most, self.name, f"{self._url} {what}")

    def _refused(self, body: Any) -> SyncdError:
        """Magento's 400 as one line; over the store's pageSize limit, which page_size to set."""
        message = magento_message(body)
        if "oauth_timestamp" in message:
            # Magento refuses an OAuth timestamp more than 600 s ahead of its own clock.
            message += " (this host's clock is more than 10 minutes ahead of the store's: sync it)"
        if "pageSize" not in message:
            return HttpStatusError(
                f"GET {self._url} was refused with HTTP 400: {message}", url=self._url, status=400
            )
        parameters = body.get("parameters") if isinstance(body, dict) else None
        limit = as_int(parameters.get("max")) if isinstance(parameters, dict) else None
        most = f"at most {limit}" if limit is not None else "at most the limit it names"
        return SourceError(
            f"source {self.name!r}: the store refused page_size={self.page_size} ({message}); "
            f"set page_size to {most}"
        )

    async def full_pages(
        self, stats: RequestStats, skip: frozenset[int] = frozenset()
    ) -> AsyncIterator[Page]:
        """Page 1 (for `total_count`), then the other pages not in `skip`, fetched concurrently.

        Pages past the end are never requested: Magento <= 2.3 answers them with the last page
        again and 2.4 with no items, so asking would be wrong on one of them either way.
        """
        size = self._settings.page_size
        records, total = await self._fetch(1, stats)
        page_count = max(1, math.ceil(total / size))
        if len(records) < min(size, total):
            raise SourceError(
                f"source {self.name!r}: asked for page_size={size} but the store returned "
                f"{len(records)} of {total} products on page 1; the store caps the page size "
                f"(input limits), set page_size to at most {len(records)}"
            )
        if 1 not in skip:
            yield Page(1, records, total, page_count)

        async def fetch(number: int) -> Page:
            found, count = await self._fetch(number, stats)
            return Page(number, found, count, math.ceil(count / size))

        todo = (n for n in range(2, page_count + 1) if n not in skip)
        if page_count > 1:
            # Closed on exit, so a consumer that stops early stops the page workers too.
            async with aclosing(
                fetch_concurrently(todo, fetch, self._settings.max_concurrency, self.name)
            ) as pages:
                async for page in pages:
                    yield page

    async def changed_pages(self, stats: RequestStats, cursor: Cursor) -> AsyncIterator[Page]:
        """Products updated at or after `cursor.since`, by keyset in (updated_at, entity_id) order.

        Each answer's `total_count` counts the products after the cursor, so the page that holds
        them all is the last one asked: `⌈C/P⌉` requests for `C` products (1 when none), even
        where the store returns fewer items than asked. Once as many distinct products were read
        as the first answer counted, the read stops too: products changed meanwhile land after
        the cursor and are read by the next run. When the first answer leaves `SPLIT_FROM` pages
        or more, the rest is read in two entity-id ranges side by side, split at the middle of
        the ids left (syncd/sources/keyset.py says why nothing is lost): two requests more at
        most, the highest id and a partly filled page.
        """
        size = self._settings.page_size
        first = await self._keyset_page(stats, cursor, (None, None), 1)
        yield Page(1, first.records, first.total, None, first.following)
        if first.total <= len(first.records) or first.following == cursor:
            return
        ranges: list[IdRange] = []
        pages_left = math.ceil((first.total - len(first.records)) / size)
        if self._settings.max_concurrency > 1 and pages_left >= SPLIT_FROM:
            top = await self._highest_id(stats)
            ranges = halves(first.following.after_id or 0, top) if top is not None else []
        if ranges:
            read = functools.partial(self._keyset, stats)
            async with aclosing(read_ranges(read, first.following, ranges, 1)) as pages:
                async for page in pages:
                    yield page
            return
        # As one read with the first page: it stops once it read what the first answer counted.
        seen = {record.sku for record in first.records}
        rest = self._keyset(stats, first.following, (None, None), 2, first.total, seen)
        number = 1
        async with aclosing(rest) as answers:
            async for answer in answers:
                number += 1
                yield Page(number, answer.records, answer.total, None, answer.following)

    async def _highest_id(self, stats: RequestStats) -> int | None:
        """The highest `entity_id` in the catalog now (one request, one trimmed item)."""
        items, _ = await self._envelope(highest_id_params(), stats, "highest id")
        return as_int(items[0].get("id")) if items else None

    async def _keyset_page(
        self, stats: RequestStats, cursor: Cursor, ids: IdRange, number: int
    ) -> KeysetAnswer:
        """The keyset page after `cursor` among the products in `ids`."""
        params = changed_params(cursor, self._settings.page_size, ids)
        records, total = await self._fetch(number, stats, params, f"keyset page {number}")
        return KeysetAnswer(records, total, next_cursor(cursor, records))

    async def _keyset(
        self,
        stats: RequestStats,
        cursor: Cursor,
        ids: IdRange,
        number: int,
        expected: int | None = None,
        seen: set[str] | None = None,
    ) -> AsyncGenerator[KeysetAnswer, None]:
        """One keyset read of the products in `ids` from `cursor`, page after page, until an
        answer holds all that remain, as many distinct products were read as the first answer
        counted (`expected`, if the read began earlier), or the cursor stops moving."""
        seen = set() if seen is None else seen
        while True:
            answer = await self._keyset_page(stats, cursor, ids, number)
            expected = answer.total if expected is None else expected
            seen.update(record.sku for record in answer.records)
            yield answer
            if answer.total <= len(answer.records) or len(seen) >= expected:
                return
            if answer.following == cursor:
                return
            cursor, number = answer.following, number + 1

    async def list_skus(self, stats: RequestStats) -> AsyncIterator[list[str]]:
        """Every sku, by `entity_id` keyset with payloads trimmed to id and sku (`fields`): `⌈N/P⌉`
        requests (1 when empty), the last one told by `total_count`, not by a short page."""
        size = self._settings.page_size
        after = 0
        while True:
            items, remaining = await self._envelope(
                listing_params(after, size), stats, "sku listing"
            )
            ids = [as_int(item.get("id")) for item in items]
            yield [str(item["sku"]) for item in items if item.get("sku")]
            # total_count counts the products after `after`: this page held the last of them.
            if remaining <= len(items):
                return
            if len(items) < size or None in ids:
                held = "products without an id" if None in ids else f"{len(items)} products"
                raise ListingIncomplete(
                    f"source {self.name!r}: the sku listing after entity_id {after} held {held} "
                    f"of {size} asked while total_count said {remaining} remained"
                )
            last = max(i for i in ids if i is not None)
            if last <= after:
                raise SourceError(
                    f"source {self.name!r}: the sku listing asked for entity_id gt {after} and "
                    f"got ids up to {last}; the store ignored the filter, so it cannot advance"
                )
            after = last

    async def probe(self, stats: RequestStats, since: datetime) -> CatalogProbe:
        """`total_count` now, and whether the newest product (by `created_at`) is from `since`
        on, compared in whole seconds as Magento stores them."""
        items, total = await self._envelope(probe_params(), stats, "catalog probe")
        newest = items[0].get("created_at") if items else None
        created = parse_magento_time(newest if isinstance(newest, str) else None)
        floor = since.astimezone(UTC).replace(microsecond=0)
        return CatalogProbe.of(total, created, floor, empty=not items)

    async def fetch_skus(self, stats: RequestStats, skus: Sequence[str]) -> list[ProductRecord]:
        """The full products for `skus`, a page-sized batch per request."""
        # A comma inside a sku would split Magento's `in` list: ask for those one by one.
        plain = [sku for sku in skus if "," not in sku]
        batches = [plain[i : i + self.page_size] for i in range(0, len(plain), self.page_size)]
        records: list[ProductRecord] = []
        for batch in batches:
            found, _ = await self._fetch(1, stats, skus_params(batch), "batch by sku")
            records.extend(found)
        for sku in (sku for sku in skus if "," in sku):
            params = skus_params([sku])
            params["searchCriteria[filter_groups][0][filters][0][condition_type]"] = "eq"
            found, _ = await self._fetch(1, stats, params, "batch by sku")
            records.extend(found)
        return records

"""Adobe Commerce (Magento 2 REST) products: `GET /rest/V1/products` paged by `searchCriteria`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

from syncd.config import AdobeCommerceSourceSettings
from syncd.errors import HttpStatusError, SourceError
from syncd.http import RequestStats, SourceClient
from syncd.logging import get_logger
from syncd.sources.base import Page, as_float, as_int, make_record
from syncd.store import ProductRecord

log = get_logger(__name__)


def search_params(page: int, page_size: int) -> dict[str, str]:
    """Paging parameters with a total order: Magento has none by default, so pages would overlap."""
    return {
        "searchCriteria[pageSize]": str(page_size),
        "searchCriteria[currentPage]": str(page),
        "searchCriteria[sortOrders][0][field]": "entity_id",
        "searchCriteria[sortOrders][0][direction]": "ASC",
    }


def to_record(item: Mapping[str, Any]) -> ProductRecord:
    """Map one Magento product to a store record."""
    sku = item.get("sku")
    if not isinstance(sku, str) or not sku:
        raise SourceError(f"a product without a sku was returned (id={item.get('id')!r})")
    name = item.get("name")
    type_id = item.get("type_id")
    updated = item.get("updated_at")
    return make_record(
        item,
        sku=sku,
        id=as_int(item.get("id")),
        name=name if isinstance(name, str) else None,
        price=as_float(item.get("price")),
        status=as_int(item.get("status")),
        type_id=type_id if isinstance(type_id, str) else None,
        updated_at=updated if isinstance(updated, str) else None,
    )


class AdobeCommerceSource:
    """Streams a Magento catalog: page 1 tells `total_count`, the rest are fetched concurrently."""

    def __init__(self, settings: AdobeCommerceSourceSettings, client: SourceClient) -> None:
        self._settings = settings
        self._client = client
        self._url = str(settings.base_url).rstrip("/") + "/rest/V1/products"

    @property
    def name(self) -> str:
        """The configured source name."""
        return self._settings.name

    async def _fetch(self, page: int, stats: RequestStats) -> tuple[list[ProductRecord], int]:
        size = self._settings.page_size
        try:
            response = await self._client.get_json(
                self._url, search_params(page, size), stats=stats
            )
        except HttpStatusError as exc:
            if exc.status == 400 and "pageSize" in str(exc):
                raise SourceError(
                    f"source {self.name!r}: the store refused page_size={size} ({exc}); "
                    "set page_size to at most the store's limit (300 when input limits are on)"
                ) from exc
            raise
        data = response.data
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise SourceError(
                f"source {self.name!r}: {self._url} page {page} has no 'items' list "
                "(is base_url an Adobe Commerce REST endpoint?)"
            )
        total = as_int(data.get("total_count"))
        if total is None:
            raise SourceError(f"source {self.name!r}: {self._url} page {page} has no total_count")
        return [to_record(item) for item in data["items"]], total

    async def pages(self, stats: RequestStats) -> AsyncIterator[Page]:
        """Page 1, then pages 2..N fetched by `max_concurrency` workers; never past the last page.

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
        yield Page(1, records, page_count)
        if page_count == 1:
            return
        async for page in self._fetch_rest(page_count, stats):
            yield page

    async def _fetch_rest(self, page_count: int, stats: RequestStats) -> AsyncIterator[Page]:
        todo: asyncio.Queue[int] = asyncio.Queue()
        for number in range(2, page_count + 1):
            todo.put_nowait(number)
        workers = min(self._settings.max_concurrency, page_count - 1)
        # Bounded so that a slow store (the consumer) holds back fetching: memory stays flat.
        done: asyncio.Queue[Page | BaseException | None] = asyncio.Queue(maxsize=workers * 2)

        async def worker() -> None:
            try:
                while not todo.empty():
                    number = todo.get_nowait()
                    records, total = await self._fetch(number, stats)
                    await done.put(
                        Page(number, records, math.ceil(total / self._settings.page_size))
                    )
            except Exception as exc:  # handed to the consumer, which re-raises it
                await done.put(exc)
            finally:
                await done.put(None)

        tasks = [
            asyncio.create_task(worker(), name=f"{self.name}-page-worker") for _ in range(workers)
        ]
        try:
            finished = 0
            while finished < workers:
                item = await done.get()
                if item is None:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

"""What a sync does alike on every platform, end to end against both emulators (real engine,
client, token cache and store): every product once; a malformed answer, a silently capped page
size or a refused credential failing the run clearly, with nothing stored lost and no secret
shown. What only one adapter does stays in
test_sync_adobe.py, test_sync_americommerce.py and test_sync_magento_integration.py."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from syncd.emulator import Fault
from syncd.emulator.adobe.app import AdobeEmulator
from syncd.emulator.americommerce.app import AmeriCommerceEmulator
from syncd.logging import configure_logging
from tests.platforms import (  # noqa: F401
    ADOBE,
    AMERICOMMERCE,
    Api,
    OpenShop,
    Platform,
    open_shop_fixture,
    platform_fixture,
)
from tests.support import query, stored_products

SEED = 3


async def test_full_sync_stores_every_product_once_as_received(open_shop: OpenShop) -> None:
    """237 products in pages of 10: every one lands exactly once, with the payload the API
    served; each page is asked once, none past the end, then the probe (the newest product by
    created_at: the catalog did not change): 25 requests."""
    shop = await open_shop(237, seed=SEED)
    result = await shop.sync()
    assert result.ok, result.error
    assert stored_products(shop.db, "shop") == shop.api.catalog.snapshot()
    assert query(shop.db, "SELECT count(*), count(DISTINCT sku) FROM products") == [(237, 237)]
    t = result.totals
    assert (t.pages, t.items_seen, t.items_created, t.requests, t.rate_limited) == (
        24, 237, 237, 25, 0
    )  # fmt: skip
    if isinstance(shop.api, AdobeEmulator):  # one IMS token for the run
        assert shop.api.stats.token_requests == 1
    if isinstance(shop.api, AmeriCommerceEmulator):  # pages by number, sorted by id, no cache
        *asked, probe = [r.query for r in shop.api.stats.requests_to("/api/v1/products")]
        assert sorted(int(q["page"]) for q in asked) == list(range(1, 25))
        assert {(q["count"], q["sort"]) for q in asked} == {("10", "id")}
        assert (probe["count"], probe["sort"]) == ("1", "-created_at")
        assert shop.api.stats.cache_hits == 0


MALFORMED = [
    (ADOBE, '{"items": [null], "total_count": 40}', "item 0 is NoneType, not a JSON object"),
    (ADOBE, '{"items": [{"sku": "A"}, 7], "total_count": 40}', "item 1 is int, not a JSON object"),
    (ADOBE, '{"items": {"0": {}}, "total_count": 40}', "has no 'items' list"),
    (ADOBE, "[]", "has no 'items' list"),
    (ADOBE, '{"items": [], "total_count": "many"}', "has no integer total_count (got 'many')"),
    (ADOBE, '{"items": [], "total_count": true}', "has no integer total_count (got True)"),
    (ADOBE, '{"items": [{"id": 3}], "total_count": 40}', "a product without a sku"),
    (AMERICOMMERCE, '{"total_count": 40, "products": [null]}', "product 0 is NoneType, not a JSON object"),
    (AMERICOMMERCE, '{"total_count": 40, "products": [{}, "x"]}', "product 1 is str, not a JSON object"),
    (AMERICOMMERCE, '{"total_count": 40, "products": {}}', "has no 'products' list"),
    (AMERICOMMERCE, '{"total_count": "lots", "products": []}', "has no integer total_count (got 'lots')"),
    (AMERICOMMERCE, '{"total_count": -1, "products": []}', "has no integer total_count (got -1)"),
    (AMERICOMMERCE, '{"total_count": 40, "products": [{"id": 3}]}', "without an item_number"),
]  # fmt: skip
"""Each platform's wrong shapes of a 200 answer, and what the error says of each."""


@pytest.mark.parametrize(
    ("platform", "body", "expected"),
    MALFORMED,
    ids=[f"{p.name}-{n}" for n, (p, _, _) in enumerate(MALFORMED)],
)
async def test_a_malformed_answer_fails_the_run_clearly_and_loses_nothing(
    open_shop: OpenShop, body: str, expected: str
) -> None:
    """A 200 whose JSON has the wrong shape: the run is failed with one line naming the URL and
    the page, the products stored before are untouched, and nothing is tombstoned."""
    shop = await open_shop(40, seed=SEED)
    assert (await shop.sync()).ok
    before = stored_products(shop.db, "shop")
    shop.api.faults.add(Fault("json", body=body, after=1))
    result = await shop.sync("full", max_concurrency=1)
    assert result.status == "failed"
    error = result.error or ""
    assert expected in error and "\n" not in error, error
    where = {
        "adobe": (f"{shop.emu.url}/rest/V1/products page 2", "without a sku"),
        "americommerce": (f"page 2 of {shop.emu.url}/api/v1/products", "item_number"),
    }[shop.platform.name]
    assert any(text in error for text in where), error
    assert query(shop.db, "SELECT status, error FROM sync_runs WHERE id = ?", result.run_id) == [
        ("failed", error)
    ]
    assert stored_products(shop.db, "shop") == before == shop.api.catalog.snapshot()
    assert query(shop.db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]


CAPPED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "adobe": (
        {"page_size_cap": 50, "page_size_cap_silent": True},
        [
            "source 'shop': asked for page_size=100 but the store returned 50 of 300 products on "
            "page 1; the store caps the page size (input limits), set page_size to at most 50"
        ],
    ),
    "americommerce": ({"max_count": 50}, ["count=100", "at most 50"]),
}
"""How each emulator caps its pages without saying so, and what the error says."""


async def test_a_store_that_silently_caps_page_size_fails_the_full_run_clearly(
    open_shop: OpenShop, platform: Platform
) -> None:
    """A store that serves 50 items when 100 are asked (no 400) would leave half of every page
    unread: page 1 shows it, the run fails naming the limit, stores nothing, and what is stored
    stays."""
    options, says = CAPPED[platform.name]
    shop = await open_shop(300, seed=SEED, **options)
    assert (await shop.sync(page_size=50)).ok
    before = stored_products(shop.db, "shop")
    shop.api.stats.reset()
    result = await shop.sync("full", page_size=100)
    assert result.status == "failed"
    assert all(text in (result.error or "") for text in says), result.error
    assert shop.api.stats.requests == 1
    assert (result.totals.pages, result.totals.items_seen) == (0, 0)
    assert stored_products(shop.db, "shop") == before == shop.api.catalog.snapshot()
    assert query(shop.db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [(0,)]


def refuse(api: Api) -> tuple[str, list[str]]:
    """Make the store refuse the source's credential; return that secret and what the run's
    error then says."""
    if isinstance(api, AdobeEmulator):
        api.set_client_disabled(True)  # IMS refuses the client_credentials grant
        return api.config.client_secret, ["invalid_client", "HTTP 4"]
    api.revoke_tokens(static_tokens=True)  # the admin-console token
    return api.config.static_tokens[0], ["401"]


async def test_a_refused_credential_fails_the_run_clearly_and_never_leaks(
    open_shop: OpenShop,
) -> None:
    """Adobe's IMS refuses the client (its error body surfaces), an AmeriCommerce store its
    revoked admin-console token (on the second 401): the run fails saying so, and neither the
    error nor any log line carries the secret."""
    shop = await open_shop(10, seed=SEED)
    secret, says = refuse(shop.api)
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    result = await shop.sync()
    assert result.status == "failed"
    assert all(text in (result.error or "") for text in says), result.error
    assert secret not in (result.error or "") and secret not in stream.getvalue()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["event"] == "sync.finished" and e["status"] == "failed" for e in lines)
    if isinstance(shop.api, AdobeEmulator):  # no token, so no product request; IMS's word kept
        (event,) = query(shop.db, "SELECT event, detail FROM token_events")
        assert event[0] == "failed" and "invalid_client" in event[1]
        assert shop.api.stats.requests == 0

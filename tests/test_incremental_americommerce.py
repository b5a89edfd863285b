"""AmeriCommerce's own incremental keyset (by id inside one updated_at); what both platforms share
is in test_incremental_platforms.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.platforms import AMERICOMMERCE, OpenShop, Platform, open_shop_fixture  # noqa: F401
from tests.support import stored_products

PRODUCTS = "/api/v1/products"


@pytest.fixture
def platform() -> Platform:
    """This module's shops are AmeriCommerce stores."""
    return AMERICOMMERCE


async def test_many_changes_in_one_millisecond_are_read_by_id_keyset(open_shop: OpenShop) -> None:
    """47 products stamped with one updated_at (a mass update): keyset by id inside it, exact."""
    shop = await open_shop(200)
    await shop.sync()
    catalog = shop.api.catalog
    stamp = shop.watermark()[0] + timedelta(seconds=5)
    for sku in list(catalog.skus())[:47]:
        catalog.update(sku, item_name="renamed", updated_at=stamp)
    shop.api.stats.reset()
    result = await shop.sync()
    assert result.totals.items_updated == 47
    assert stored_products(shop.db, "shop") == catalog.snapshot()
    asked = [r.query for r in shop.emu.americommerce.stats.requests_to(PRODUCTS)]
    inside = [q for q in asked if q.get("updated_at", "").startswith("eq:")]
    assert [q["id"].startswith("gt:") for q in inside] == [True] * 4
    assert len(asked) == 5  # 1 + 4 id-keyset pages of 10, 10, 10, 7 (+0 repeats)

"""GET /rest/V1/products: searchCriteria paging, ordering, filters, fields, past-end modes, caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from syncd.emulator import AdobeConfig, Emulator
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AdobeCaller, StartEmulator, criteria


async def _all_pages(caller: AdobeCaller, size: int, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    headers = await caller.headers()
    page = 1
    while True:
        answer = await caller.get(criteria(page_size=size, page=page, **kwargs), headers)
        assert answer.status == 200, answer.text
        batch = answer.json()["items"]
        if not batch:
            return items
        items.extend(batch)
        page += 1


async def test_sorted_paging_visits_every_product_once(adobe: AdobeCaller, emu: Emulator) -> None:
    """Paging with sortOrders entity_id ASC yields each product once, in order, then empty pages."""
    items = await _all_pages(adobe, 47, sort=[("entity_id", "ASC")])
    ids = [item["id"] for item in items]
    assert ids == sorted(ids)
    assert {item["sku"] for item in items} == set(emu.adobe.catalog.snapshot())


async def test_response_shape_and_echo(adobe: AdobeCaller) -> None:
    """The answer is {items, search_criteria, total_count} with the request echoed back."""
    params = criteria(
        page_size=5,
        page=2,
        sort=[("updated_at", "asc")],
        groups=[[("updated_at", "2025-06-01 00:00:00", "gteq")]],
    )
    body = (await adobe.get(params)).json()
    assert list(body) == ["items", "search_criteria", "total_count"]
    assert body["search_criteria"] == {
        "filter_groups": [
            {
                "filters": [
                    {
                        "field": "updated_at",
                        "value": "2025-06-01 00:00:00",
                        "condition_type": "gteq",
                    }
                ]
            }
        ],
        "sort_orders": [{"field": "updated_at", "direction": "ASC"}],
        "page_size": 5,
        "current_page": 2,
    }
    item = body["items"][0]
    for key in (
        "id",
        "sku",
        "name",
        "attribute_set_id",
        "price",
        "status",
        "visibility",
        "type_id",
    ):
        assert key in item
    assert set(item["extension_attributes"]) >= {"website_ids", "stock_item"}
    assert {"attribute_code", "value"} == set(item["custom_attributes"][0])
    datetime.strptime(item["updated_at"], "%Y-%m-%d %H:%M:%S")


async def test_updated_at_then_id_order_matches_the_catalog(
    adobe: AdobeCaller, emu: Emulator
) -> None:
    """Sorting by updated_at then entity_id (both DESC) is a total order clients can page by."""
    items = await _all_pages(adobe, 64, sort=[("updated_at", "DESC"), ("entity_id", "DESC")])
    snapshot = emu.adobe.catalog.snapshot().values()
    expected = sorted(snapshot, key=lambda p: (p["updated_at"], p["id"]), reverse=True)
    assert [i["id"] for i in items] == [p["id"] for p in expected]


async def test_missing_direction_sorts_descending(adobe: AdobeCaller) -> None:
    """A sort order without direction is DESC, as Magento's collection processor does it."""
    body = (await adobe.get(criteria(page_size=5, sort=[("entity_id", None)]))).json()
    assert [i["id"] for i in body["items"]] == [300, 299, 298, 297, 296]
    assert body["search_criteria"]["sort_orders"] == [{"field": "entity_id"}]


async def test_sku_order_is_case_insensitive_collation(adobe: AdobeCaller, emu: Emulator) -> None:
    """Ordering by sku follows the sorted skus."""
    body = (await adobe.get(criteria(page_size=300, sort=[("sku", "ASC")]))).json()
    assert [i["sku"] for i in body["items"]] == sorted(
        emu.adobe.catalog.snapshot(), key=str.casefold
    )


async def test_past_end_empty_keeps_total(adobe: AdobeCaller) -> None:
    """Magento 2.4: a page past the end has no items but the real total_count."""
    body = (await adobe.get(criteria(page_size=100, page=4, sort=[("entity_id", "ASC")]))).json()
    assert body["items"] == []
    assert body["total_count"] == 300


async def test_past_end_repeat_returns_last_page(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """Magento <= 2.3: a page past the end repeats the last page."""
    emu = await start(adobe=AdobeConfig(products=250, past_end="repeat"))
    caller = AdobeCaller(emu, session)
    sort = [("entity_id", "ASC")]
    last = (await caller.get(criteria(page_size=100, page=3, sort=sort))).json()["items"]
    beyond = (await caller.get(criteria(page_size=100, page=9, sort=sort))).json()["items"]
    assert [i["id"] for i in last] == list(range(201, 251))
    assert beyond == last


async def test_page_size_cap_rejects_and_defaults(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """Input limits: pageSize above the cap is Magento's 400; no pageSize gets the default 20."""
    emu = await start(adobe=AdobeConfig(products=400, page_size_cap=300))
    caller = AdobeCaller(emu, session)
    refused = await caller.get(criteria(page_size=301))
    assert refused.status == 400
    assert refused.json() == {
        "message": "Maximum SearchCriteria pageSize is %max",
        "parameters": {"max": 300},
    }
    assert (await caller.get(criteria(page_size=300))).status == 200
    body = (await caller.get(criteria())).json()
    assert len(body["items"]) == 20
    assert body["search_criteria"]["page_size"] == 20


async def test_without_page_size_everything_comes_back(adobe: AdobeCaller) -> None:
    """No pageSize and no input limits: one answer with every product."""
    body = (await adobe.get(criteria())).json()
    assert len(body["items"]) == body["total_count"] == 300


async def test_search_criteria_is_required(adobe: AdobeCaller) -> None:
    """GET /V1/products without any searchCriteria is a 400, as in Magento 2.4."""
    answer = await adobe.get({})
    assert answer.status == 400
    assert answer.json() == {
        "message": '"%fieldName" is required. Enter and try again.',
        "parameters": {"fieldName": "searchCriteria"},
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            criteria(page_size=2, sort=[("entity_id", "UP")]),
            "The sort order has to be specified as %1",
        ),
        (criteria(page_size=2, sort=[("entity_id;drop", "ASC")]), "Sort order field %1 contains"),
        (criteria(page_size=2, sort=[("no_such_column", "ASC")]), "Internal Error."),
        (criteria(groups=[[("store_id", "1", "eq")]]), "Invalid attribute name: %1"),
        (criteria(groups=[[("updated_at", "yesterday", "gt")]]), 'Invalid value of "%value"'),
        ({"searchCriteria[pageSize]": "ten"}, 'Error occurred during "pageSize" processing.'),
        (
            {"searchCriteria[pageSize]": "2", "searchCriteria[colour]": "x"},
            '"%fieldName" is not supported.',
        ),
    ],
)
async def test_bad_criteria_are_magento_400s(
    adobe: AdobeCaller, params: dict[str, str], message: str
) -> None:
    """Malformed criteria answer 400 with Magento's message/parameters body."""
    answer = await adobe.get(params)
    assert answer.status == 400
    assert answer.json()["message"].startswith(message)


async def test_updated_at_range_filter(adobe: AdobeCaller, emu: Emulator) -> None:
    """gteq/lt on updated_at compare 'YYYY-MM-DD HH:MM:SS' UTC values."""
    low, high = "2025-05-01 00:00:00", "2025-08-01 12:30:00"
    params = criteria(
        page_size=300,
        sort=[("updated_at", "ASC"), ("entity_id", "ASC")],
        groups=[[("updated_at", low, "gteq")], [("updated_at", high, "lt")]],
    )
    body = (await adobe.get(params)).json()
    expected = [p for p in emu.adobe.catalog.snapshot().values() if low <= p["updated_at"] < high]
    assert body["total_count"] == len(expected) > 0
    assert sorted(i["sku"] for i in body["items"]) == sorted(p["sku"] for p in expected)


async def test_or_within_group_and_across_groups(adobe: AdobeCaller) -> None:
    """Filters in one group are ORed; groups are ANDed."""
    params = criteria(
        sort=[("entity_id", "ASC")],
        groups=[
            [("entity_id", "5", "lteq"), ("entity_id", "290", "gt")],
            [("entity_id", "2,3,4,295,296,7", "in")],
        ],
    )
    body = (await adobe.get(params)).json()
    assert [i["id"] for i in body["items"]] == [2, 3, 4, 295, 296]


async def test_condition_types(adobe: AdobeCaller, emu: Emulator) -> None:
    """eq (default), neq, like with % wildcards (case-insensitive), nin and camelCase keys."""
    sku = emu.adobe.catalog.get(next(emu.adobe.catalog.skus()))["sku"]
    body = (await adobe.get(criteria(groups=[[("sku", sku.lower(), None)]]))).json()
    assert [i["sku"] for i in body["items"]] == [sku]
    body = (await adobe.get(criteria(groups=[[("sku", "%000001_", "like")]]))).json()
    assert sorted(i["id"] for i in body["items"]) == list(range(10, 20))
    body = (
        await adobe.get(
            criteria(groups=[[("entity_id", "1", "neq")], [("entity_id", "3", "lteq")]])
        )
    ).json()
    assert sorted(i["id"] for i in body["items"]) == [2, 3]
    june = criteria(groups=[[("updated_at", "2025-06%", "like")]])
    expected = {
        p["id"]
        for p in emu.adobe.catalog.snapshot().values()
        if p["updated_at"].startswith("2025-06")
    }
    assert {i["id"] for i in (await adobe.get(june)).json()["items"]} == expected
    camel = {
        "searchCriteria[filterGroups][0][filters][0][field]": "entity_id",
        "searchCriteria[filterGroups][0][filters][0][value]": "1,2",
        "searchCriteria[filterGroups][0][filters][0][conditionType]": "nin",
        "searchCriteria[pageSize]": "1000",
    }
    assert (await adobe.get(camel)).json()["total_count"] == 298


async def test_fields_partial_response(adobe: AdobeCaller) -> None:
    """fields=items[sku,updated_at],total_count returns only those keys."""
    params = criteria(
        page_size=3, sort=[("entity_id", "ASC")], fields="items[sku,updated_at],total_count"
    )
    body = (await adobe.get(params)).json()
    assert list(body) == ["items", "total_count"]
    assert [list(i) for i in body["items"]] == [["sku", "updated_at"]] * 3
    nested = criteria(page_size=1, fields="items[id,extension_attributes[stock_item[qty]]]")
    item = (await adobe.get(nested)).json()["items"][0]
    assert list(item) == ["id", "extension_attributes"]
    assert list(item["extension_attributes"]) == ["stock_item"]
    assert list(item["extension_attributes"]["stock_item"]) == ["qty"]


async def test_unsorted_paging_repeats_and_skips(adobe: AdobeCaller, emu: Emulator) -> None:
    """Without sortOrders the order changes between requests, so offset paging is unreliable."""
    headers = await adobe.headers()
    first = (await adobe.get(criteria(page_size=300), headers)).json()["items"]
    second = (await adobe.get(criteria(page_size=300), headers)).json()["items"]
    assert sorted(i["id"] for i in first) == list(range(1, 301))
    assert [i["id"] for i in first] != [i["id"] for i in second]
    seen: list[int] = []
    for page in range(1, 7):
        seen += [
            i["id"]
            for i in (await adobe.get(criteria(page_size=50, page=page), headers)).json()["items"]
        ]
    assert len(seen) == 300
    assert len(set(seen)) < 300


async def test_ties_in_the_sort_key_are_unstable(adobe: AdobeCaller, emu: Emulator) -> None:
    """Products sharing an updated_at come back in a different order from request to request."""
    params = criteria(page_size=300, sort=[("updated_at", "ASC")])
    headers = await adobe.headers()
    orders = {
        tuple(i["id"] for i in (await adobe.get(params, headers)).json()["items"]) for _ in range(4)
    }
    assert len(orders) > 1
    stamp = {p["id"]: p["updated_at"] for p in emu.adobe.catalog.snapshot().values()}
    for order in orders:
        stamps = [stamp[i] for i in order]
        assert stamps == sorted(stamps)


async def test_ties_are_stable_when_configured(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """unstable_ties=False keeps equal keys in entity order."""
    emu = await start(adobe=AdobeConfig(products=300, unstable_ties=False))
    caller = AdobeCaller(emu, session)
    params = criteria(page_size=300, sort=[("updated_at", "ASC")])
    a = (await caller.get(params)).json()["items"]
    b = (await caller.get(params)).json()["items"]
    assert a == b


async def test_single_product_and_store_codes(adobe: AdobeCaller, emu: Emulator) -> None:
    """/V1/products/{sku} answers one product or Magento's 404; store codes prefix the path, an
    unknown one is Magento's unrouted 404."""
    sku = next(emu.adobe.catalog.skus())
    one = await adobe.get({}, path=f"/rest/V1/products/{sku}")
    assert one.json() == emu.adobe.catalog.get(sku)
    missing = await adobe.get({}, path="/rest/V1/products/NOPE")
    assert missing.status == 404
    assert missing.json()["message"].startswith("The product that was requested doesn't exist.")
    assert (await adobe.get(criteria(page_size=1), path="/rest/default/V1/products")).status == 200
    assert (await adobe.get(criteria(page_size=1), path="/rest/all/V1/products")).status == 200
    # Magento leaves an unknown store code in the path, and no route matches that path.
    unknown = await adobe.get(criteria(page_size=1), path="/rest/nowhere/V1/products")
    assert (unknown.status, unknown.json()) == (
        404,
        {"message": "Request does not match any route."},
    )


async def test_mutations_between_requests(
    adobe: AdobeCaller, emu: Emulator, clock: FakeClock
) -> None:
    """update bumps updated_at (unless touch=False), delete and insert change the listing."""
    catalog = emu.adobe.catalog
    sku = next(catalog.skus())
    before = catalog.get(sku)["updated_at"]
    clock.advance(60)
    catalog.update(sku, qty=0, is_in_stock=False, touch=False)
    assert catalog.get(sku)["updated_at"] == before
    assert catalog.get(sku)["extension_attributes"]["stock_item"]["qty"] == 0
    catalog.update(sku, price=9.5, color="red")
    product = catalog.get(sku)
    assert product["updated_at"] == clock.now().strftime("%Y-%m-%d %H:%M:%S")
    assert product["price"] == 9.5
    assert {"attribute_code": "color", "value": "red"} in product["custom_attributes"]
    newest = (await adobe.get(criteria(page_size=1, sort=[("updated_at", "DESC")]))).json()[
        "items"
    ][0]
    assert newest == product
    new_sku = catalog.insert(name="Fresh Product", price=12)
    catalog.delete(sku)
    body = (await adobe.get(criteria(page_size=400, sort=[("entity_id", "ASC")]))).json()
    ids = [i["sku"] for i in body["items"]]
    assert body["total_count"] == 300
    assert ids[-1] == new_sku and sku not in ids
    since = (clock.now() - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    changed = (await adobe.get(criteria(groups=[[("updated_at", since, "gt")]]))).json()["items"]
    assert [i["sku"] for i in changed] == [new_sku]


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
async def test_id_keyset_inside_one_second(
    adobe: AdobeCaller, emu: Emulator, direction: str
) -> None:
    """updated_at eq one second AND entity_id gt X, by id: that second's later ids, in order."""
    catalog = emu.adobe.catalog
    skus = list(catalog.skus())
    moment = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    for sku in skus[::7]:
        catalog.update(sku, updated_at=moment)
    after = 100
    params = criteria(
        page_size=300,
        sort=[("entity_id", direction)],
        groups=[[("updated_at", "2026-03-01 12:00:00", "eq")], [("entity_id", str(after), "gt")]],
    )
    body = (await adobe.get(params)).json()
    expected = sorted(
        (p["id"] for p in catalog.snapshot().values()
         if p["updated_at"] == "2026-03-01 12:00:00" and p["id"] > after),
        reverse=direction == "DESC",
    )  # fmt: skip
    assert [i["id"] for i in body["items"]] == expected
    assert body["total_count"] == len(expected) > 0


async def test_created_at_order_and_filter(
    adobe: AdobeCaller, emu: Emulator, clock: FakeClock
) -> None:
    """sortOrders on created_at DESC puts the newest product first, with total_count, whatever
    was inserted or deleted; created_at gteq selects the products created from that second."""
    catalog = emu.adobe.catalog
    probe = criteria(
        page_size=1, page=1, sort=[("created_at", "DESC")],
        fields="items[id,sku,created_at],total_count",
    )  # fmt: skip
    snapshot = catalog.snapshot().values()
    newest = max(snapshot, key=lambda p: p["created_at"])
    body = (await adobe.get(probe)).json()
    assert body["total_count"] == 300
    assert body["items"][0]["created_at"] == newest["created_at"]
    assert list(body["items"][0]) == ["id", "sku", "created_at"]
    clock.advance(5)
    fresh = catalog.insert(name="Fresh", price=1.0)
    catalog.delete(next(catalog.skus()))
    body = (await adobe.get(probe)).json()
    assert (body["total_count"], body["items"][0]["sku"]) == (300, fresh)
    catalog.delete(fresh)
    body = (await adobe.get(probe)).json()
    assert body["total_count"] == 299 and body["items"][0]["sku"] != fresh
    since = clock.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    later = catalog.insert(name="Later", price=1.0)
    created = criteria(groups=[[("created_at", since, "gteq")]], sort=[("entity_id", "ASC")])
    assert [i["sku"] for i in (await adobe.get(created)).json()["items"]] == [later]


async def test_or_across_fields_in_one_group(adobe: AdobeCaller, emu: Emulator) -> None:
    """A keyset in CNF: group A (updated_at gteq T) AND group B (updated_at gt T OR entity_id
    gt ID): filters on different fields in one group are ORed, as Magento's FilterProcessor does."""
    catalog = emu.adobe.catalog
    moment = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    skus = list(catalog.skus())
    for sku in skus[10:20]:
        catalog.update(sku, updated_at=moment)
    for sku in skus[20:23]:
        catalog.update(sku, updated_at=moment + timedelta(seconds=1))
    stamp = "2026-03-01 12:00:00"
    params = criteria(
        page_size=100,
        sort=[("updated_at", "ASC"), ("entity_id", "ASC")],
        groups=[
            [("updated_at", stamp, "gteq")],
            [("updated_at", stamp, "gt"), ("entity_id", "15", "gt")],
        ],
    )
    body = (await adobe.get(params)).json()
    later = sorted(
        (p for p in catalog.snapshot().values() if p["updated_at"] > stamp),
        key=lambda p: (p["updated_at"], p["id"]),
    )
    expected = [16, 17, 18, 19, 20] + [p["id"] for p in later]
    assert [i["id"] for i in body["items"]] == expected
    assert body["total_count"] == len(expected)


async def test_a_silent_page_size_cap_clamps_instead_of_refusing(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """page_size_cap_silent: pageSize above the cap is served as the cap, offsets included, and
    the echo says so; total_count stays the catalog's."""
    emu = await start(adobe=AdobeConfig(products=120, page_size_cap=50, page_size_cap_silent=True))
    caller = AdobeCaller(emu, session)
    body = (await caller.get(criteria(page_size=100, page=2, sort=[("entity_id", "ASC")]))).json()
    assert [i["id"] for i in body["items"]] == list(range(51, 101))
    assert (body["total_count"], body["search_criteria"]["page_size"]) == (120, 50)

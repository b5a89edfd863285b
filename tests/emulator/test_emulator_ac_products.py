"""AmeriCommerce GET /api/v1/products: envelope, paging links, query syntax, call limit, cache."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from syncd.emulator import AmeriCommerceConfig, Emulator
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AcCaller, StartEmulator

TOKEN = "console-token"


async def _ac(start: StartEmulator, session: aiohttp.ClientSession, **overrides: Any) -> AcCaller:
    settings: dict[str, Any] = {"products": 250, "static_tokens": (TOKEN,), "call_limit": 1000}
    settings.update(overrides)
    return AcCaller(await start(americommerce=AmeriCommerceConfig(**settings)), session)


@pytest.fixture
async def emu(start: StartEmulator) -> Emulator:
    """A 250-product store with an admin-console token and a generous call limit."""
    config = AmeriCommerceConfig(products=250, static_tokens=(TOKEN,), call_limit=1000)
    return await start(americommerce=config)


@pytest.fixture
def ac(emu: Emulator, session: aiohttp.ClientSession) -> AcCaller:
    """A caller for that store."""
    return AcCaller(emu, session)


def _fresh() -> dict[str, str]:
    return {"Cache-Control": "no-cache"}


async def test_envelope_and_next_page_links(ac: AcCaller, emu: Emulator) -> None:
    """Following next_page from page 1 visits every product once; the last page has no next_page."""
    first = await ac.get("/api/v1/products", TOKEN)
    body = first.json()
    assert list(body) == ["total_count", "next_page", "products"]
    assert body["total_count"] == 250
    assert len(body["products"]) == 100
    product = body["products"][0]
    assert list(product)[:2] == ["id", "item_number"]
    assert {"item_name", "price", "is_hidden", "updated_at", "created_at"} <= set(product)
    datetime.fromisoformat(product["updated_at"])
    seen = [p["id"] for p in body["products"]]
    url = body["next_page"]
    while url:
        assert url.startswith(ac.emu.url + "/api/v1/products?")
        async with ac.session.get(url, headers={"X-AC-Auth-Token": TOKEN}) as response:
            page = await response.json()
        assert "previous_page" in page
        seen += [p["id"] for p in page["products"]]
        url = page.get("next_page")
    assert seen == list(range(1, 251))


async def test_page_past_the_end_is_404(ac: AcCaller) -> None:
    """page=4 of 3 answers 404 with the API error body."""
    answer = await ac.get("/api/v1/products?page=4", TOKEN)
    assert answer.status == 404
    assert answer.json()["status_code"] == 404
    assert set(answer.json()) == {"status_code", "message", "details"}
    assert (await ac.get("/api/v1/products?page=3", TOKEN)).status == 200


async def test_count_and_sort(ac: AcCaller, emu: Emulator) -> None:
    """count sets the page size; sort=updated_at / -updated_at / -id order the results."""
    snapshot = list(emu.americommerce.catalog.snapshot().values())
    by_time = await ac.get("/api/v1/products?count=250&sort=updated_at,id", TOKEN)
    stamps = [datetime.fromisoformat(p["updated_at"]) for p in by_time.json()["products"]]
    assert stamps == sorted(stamps) and len(stamps) == 250
    newest = (await ac.get("/api/v1/products?count=5&sort=-updated_at,-id", TOKEN)).json()[
        "products"
    ]
    expected = sorted(
        snapshot, key=lambda p: (datetime.fromisoformat(p["updated_at"]), p["id"]), reverse=True
    )
    assert [p["id"] for p in newest] == [p["id"] for p in expected[:5]]
    last = (await ac.get("/api/v1/products?count=3&sort=-id", TOKEN)).json()
    assert [p["id"] for p in last["products"]] == [250, 249, 248]


async def test_filters_with_conjunctions(ac: AcCaller, emu: Emulator) -> None:
    """updated_at=gte:A+AND+lt:B, id=gt:N and OR-prefixed fields follow the documented syntax."""
    snapshot = list(emu.americommerce.catalog.snapshot().values())
    low, high = "2025-04-01T00:00:00Z", "2025-10-01T00:00:00.0Z"
    path = f"/api/v1/products?count=250&updated_at=gte:{low}+AND+lt:{high}"
    got = (await ac.get(path, TOKEN)).json()["products"]
    lo, hi = datetime.fromisoformat(low), datetime.fromisoformat(high)
    expected = [p["id"] for p in snapshot if lo <= datetime.fromisoformat(p["updated_at"]) < hi]
    assert [p["id"] for p in got] == expected and expected
    got = (await ac.get("/api/v1/products?id=gt:240", TOKEN)).json()["products"]
    assert [p["id"] for p in got] == list(range(241, 251))
    got = (await ac.get("/api/v1/products?id=lte:2+OR+gte:249", TOKEN)).json()["products"]
    assert [p["id"] for p in got] == [1, 2, 249, 250]
    got = (await ac.get("/api/v1/products?id=OR+lt:3&item_number=startwith:nomatch", TOKEN)).json()
    assert [p["id"] for p in got["products"]] == [1, 2]
    name = snapshot[0]["item_name"]
    word = name.split()[0].lower()
    got = (await ac.get(f"/api/v1/products?count=250&item_name=like:{word}", TOKEN)).json()[
        "products"
    ]
    assert {p["id"] for p in got} == {p["id"] for p in snapshot if word in p["item_name"].lower()}
    got = (
        await ac.get(f"/api/v1/products?count=250&id=not:1&item_name={quote(name)}", TOKEN)
    ).json()
    assert {p["id"] for p in got["products"]} == {
        p["id"] for p in snapshot[1:] if p["item_name"] == name
    }


async def test_local_offsets_and_naive_times(ac: AcCaller, emu: Emulator) -> None:
    """An encoded +hh:mm offset works; a bare '+' decodes to a space and is a 400."""
    encoded = quote("2025-06-01T00:00:00+02:00")
    assert (await ac.get(f"/api/v1/products?updated_at=gt:{encoded}", TOKEN)).status == 200
    broken = await ac.get("/api/v1/products?updated_at=gt:2025-06-01T00:00:00+02:00", TOKEN)
    assert broken.status == 400


@pytest.mark.parametrize(
    "query",
    ["colour=red", "sort=flavour", "updated_at=gt:last-tuesday", "id=gt:ten", "count=-1", "page=x"],
)
async def test_bad_queries_are_400(ac: AcCaller, query: str) -> None:
    """Unknown fields, unknown sort keys and unparsable values answer 400 with the error body."""
    answer = await ac.get(f"/api/v1/products?{query}", TOKEN)
    assert answer.status == 400
    assert answer.json()["status_code"] == 400


async def test_fields_and_single_product(ac: AcCaller, emu: Emulator) -> None:
    """fields= keeps only the listed fields; /products/{id} returns one product or 404."""
    got = (await ac.get("/api/v1/products?count=2&fields=id,updated_at", TOKEN)).json()["products"]
    assert [list(p) for p in got] == [["id", "updated_at"]] * 2
    one = await ac.get("/api/v1/products/7", TOKEN)
    assert one.json()["id"] == 7
    assert (await ac.get("/api/v1/products/9999", TOKEN)).status == 404


async def test_auth_header_required(ac: AcCaller, emu: Emulator) -> None:
    """No or an unknown X-AC-Auth-Token is a 401 with the error body."""
    missing = await ac.get("/api/v1/products")
    assert missing.status == 401
    assert missing.json()["status_code"] == 401
    assert (await ac.get("/api/v1/products", "nope")).status == 401
    assert emu.americommerce.stats.unauthorized == 2


async def test_scope_without_catalog_is_forbidden(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """A token whose scope lacks read_catalog/catalog cannot list products."""
    ac = await _ac(start, session, scope="read_orders")
    answer = await ac.get("/api/v1/products", TOKEN)
    assert answer.status == 403


async def test_call_limit_header_and_429(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """X-AC-Call-Limit counts calls per 10 s window; over it 429 with Retry-After; then it resets."""
    ac = await _ac(start, session, call_limit=3)
    for used in (1, 2, 3):
        answer = await ac.get("/api/v1/products?count=1", TOKEN)
        assert answer.headers["X-AC-Call-Limit"] == f"{used}/3"
    clock.advance(4)
    refused = await ac.get("/api/v1/products?count=1", TOKEN)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "6"
    assert refused.headers["X-AC-Call-Limit"] == "3/3"
    assert refused.json()["status_code"] == 429
    assert ac.emu.americommerce.stats.rate_limited == 1
    clock.advance(6)
    answer = await ac.get("/api/v1/products?count=1", TOKEN)
    assert (answer.status, answer.headers["X-AC-Call-Limit"]) == (200, "1/3")
    unauthorized = await ac.get("/api/v1/products?count=1", "nope")
    assert unauthorized.headers["X-AC-Call-Limit"] == "2/3"


async def test_call_limit_retry_after_as_date(
    start: StartEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """retry_after_format='http-date' announces when the window resets."""
    ac = await _ac(start, session, call_limit=1, retry_after_format="http-date")
    await ac.get("/api/v1/products?count=1", TOKEN)
    clock.advance(2.5)
    refused = await ac.get("/api/v1/products?count=1", TOKEN)
    when = parsedate_to_datetime(refused.headers["Retry-After"])
    assert (when - clock.now()).total_seconds() == 7.5


async def test_cached_answers_are_stale_without_no_cache(
    ac: AcCaller, emu: Emulator, clock: FakeClock
) -> None:
    """GETs are served from the store's cache for 30 s unless Cache-Control: no-cache is sent."""
    catalog = emu.americommerce.catalog
    path = "/api/v1/products?count=1"
    before = (await ac.get(path, TOKEN)).json()["products"][0]
    clock.advance(5)
    catalog.update(before["item_number"], item_name="Renamed")
    stale = (await ac.get(path, TOKEN)).json()["products"][0]
    assert stale == before
    assert emu.americommerce.stats.cache_hits == 1
    fresh = (await ac.get(path, TOKEN, **_fresh())).json()["products"][0]
    assert fresh["item_name"] == "Renamed"
    catalog.update(before["item_number"], item_name="Renamed again")
    clock.advance(30)
    assert (await ac.get(path, TOKEN)).json()["products"][0]["item_name"] == "Renamed again"


async def test_touch_false_keeps_updated_at(ac: AcCaller, emu: Emulator, clock: FakeClock) -> None:
    """Catalog updates bump updated_at to the clock (with milliseconds) unless touch=False."""
    catalog = emu.americommerce.catalog
    sku = next(catalog.skus())
    stamp = catalog.get(sku)["updated_at"]
    clock.advance(12.345)
    catalog.update(sku, quantity_on_hand=0, touch=False)
    assert catalog.get(sku)["updated_at"] == stamp
    catalog.update(sku, price=1.5)
    assert datetime.fromisoformat(catalog.get(sku)["updated_at"]) == clock.now()
    newest = (await ac.get("/api/v1/products?count=1&sort=-updated_at", TOKEN, **_fresh())).json()
    assert newest["products"][0]["item_number"] == sku


async def test_newest_by_created_at(ac: AcCaller, emu: Emulator, clock: FakeClock) -> None:
    """sort=-created_at&count=1 with fields: the newest product and the whole catalog's count;
    created_at=gte: selects products created from that moment."""
    catalog = emu.americommerce.catalog
    probe = "/api/v1/products?page=1&count=1&sort=-created_at&fields=id,item_number,created_at"
    newest = max(catalog.snapshot().values(), key=lambda p: datetime.fromisoformat(p["created_at"]))
    body = (await ac.get(probe, TOKEN, **_fresh())).json()
    assert body["total_count"] == 250
    assert body["products"] == [{k: newest[k] for k in ("id", "item_number", "created_at")}]
    clock.advance(5)
    fresh = catalog.insert(item_name="Fresh", price=1.0)
    catalog.delete(next(catalog.skus()))
    body = (await ac.get(probe, TOKEN, **_fresh())).json()
    assert (body["total_count"], body["products"][0]["item_number"]) == (250, fresh)
    since = quote(clock.now().isoformat())
    got = (await ac.get(f"/api/v1/products?created_at=gte:{since}", TOKEN, **_fresh())).json()
    assert [p["item_number"] for p in got["products"]] == [fresh]

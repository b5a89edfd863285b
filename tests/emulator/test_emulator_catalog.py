"""The catalog and the selection engine: determinism, rendering, indexes kept right by mutations."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from syncd.emulator.adobe.products import FIELD_KINDS, AdobeProductModel
from syncd.emulator.americommerce.products import AmeriCommerceProductModel
from syncd.emulator.catalog import Catalog, ProductModel
from syncd.emulator.predicates import Getter, Predicate, getter, predicate
from syncd.emulator.selection import SortKey, select
from syncd.emulator.timefmt import (
    MagentoFormatter,
    StoreFormatter,
    magento_format,
    store_format,
    to_ms,
)
from tests.clocks import FakeClock


def _adobe(n: int, seed: int = 1, clock: FakeClock | None = None) -> Catalog:
    return Catalog(AdobeProductModel(seed), clock or FakeClock(), n, random.Random(seed))


def test_generation_is_deterministic_per_seed() -> None:
    """The same seed gives the same catalog; another seed gives another."""
    assert _adobe(200, 3).snapshot() == _adobe(200, 3).snapshot()
    assert _adobe(200, 3).snapshot() != _adobe(200, 4).snapshot()


def test_timestamps_are_realistic() -> None:
    """created_at <= updated_at, within the past year, with many products sharing a second."""
    clock = FakeClock()
    catalog = _adobe(3000, clock=clock)
    now = to_ms(clock.now())
    year_ago = to_ms(clock.now() - timedelta(days=366))
    stamps = Counter(catalog.updated_ms(s) for s in catalog.alive)
    for slot in catalog.alive:
        assert year_ago <= catalog.created_ms(slot) <= catalog.updated_ms(slot) <= now
        assert catalog.updated_ms(slot) % 1000 == 0
    shared = sum(count for count in stamps.values() if count > 1)
    assert shared > 0.2 * 3000
    assert max(stamps.values()) >= 20


@pytest.mark.parametrize(
    "model",
    [AdobeProductModel(5), AmeriCommerceProductModel(5, -300)],
    ids=["adobe", "americommerce"],
)
def test_bytes_are_the_dict_serialized(model: ProductModel) -> None:
    """render_bytes equals compact json.dumps(render) for untouched and changed products."""
    catalog = Catalog(model, FakeClock(), 300, random.Random(5))
    skus = list(catalog.skus())
    catalog.update(skus[3], touch=False, **{"price": 3.25})
    for slot in [*list(catalog.alive)[:120], 3]:
        expected = json.dumps(catalog.render(slot), separators=(",", ":")).encode()
        assert catalog.render_bytes(slot) == expected


def test_mutation_rules() -> None:
    """Duplicate skus, unknown skus and immutable fields are refused; delete removes."""
    clock = FakeClock()
    catalog = _adobe(10, clock=clock)
    sku = next(catalog.skus())
    with pytest.raises(ValueError, match="already exists"):
        catalog.insert(sku=sku)
    with pytest.raises(KeyError):
        catalog.update("nope", name="x")
    with pytest.raises(ValueError, match="cannot be changed"):
        catalog.update(sku, sku="other")
    with pytest.raises(ValueError, match="wrong type"):
        catalog.update(sku, price="free")
    new = catalog.insert(sku="MY-SKU", name="Mine", updated_at=clock.now() - timedelta(days=2))
    assert catalog.get(new)["name"] == "Mine"
    assert catalog.get(new)["id"] == 11
    catalog.delete(sku)
    assert len(catalog) == 10
    with pytest.raises(KeyError):
        catalog.get(sku)


def _getters(catalog: Catalog) -> Callable[[str], Getter]:
    return lambda field: getter(catalog, field, FIELD_KINDS[field])


def _brute(catalog: Catalog, clauses: list[list[Predicate]], sort: list[SortKey]) -> list[int]:
    rows = [s for s in catalog.alive if all(any(p.test(s) for p in c) for c in clauses)]
    for key in reversed(sort):
        get = getter(catalog, key.field, FIELD_KINDS[key.field])
        rows.sort(key=get, reverse=key.descending)
    return rows


def test_indexes_survive_random_mutations() -> None:
    """After inserts, updates and deletes, index-driven selections equal brute-force ones."""
    clock = FakeClock()
    catalog = _adobe(400, clock=clock)
    catalog.updated_index()
    catalog.sku_index()
    rng = random.Random(11)
    for _ in range(300):
        clock.advance(rng.randrange(0, 3))
        skus = list(catalog.skus())
        roll = rng.random()
        if roll < 0.2:
            catalog.insert()
        elif roll < 0.35:
            catalog.delete(rng.choice(skus))
        else:
            catalog.update(rng.choice(skus), touch=rng.random() < 0.8, price=rng.randrange(1, 99))
    gets = _getters(catalog)
    mid = catalog.updated_ms(catalog.alive[len(catalog.alive) // 2])
    clauses = [
        [predicate(gets("updated_at"), "updated_at", "gteq", mid)],
        [predicate(gets("entity_id"), "entity_id", "gt", 50)],
    ]
    for sort in (
        [SortKey("entity_id")],
        [SortKey("entity_id", True)],
        [SortKey("updated_at"), SortKey("entity_id")],
        [SortKey("updated_at", True), SortKey("entity_id", True)],
        [SortKey("sku")],
        [SortKey("updated_at"), SortKey("entity_id", True)],
        [SortKey("price"), SortKey("entity_id")],
    ):
        for where in ([], clauses):
            got = select(catalog, where, sort, gets, random.Random(1))
            assert got.window(0, 10_000, None) == _brute(catalog, where, sort), sort


@pytest.mark.parametrize("total", [0, 1, 7, 37, 100, 301, 1000])
def test_unsorted_order_is_a_permutation(total: int) -> None:
    """Without an order each request sees every match exactly once, in a request-specific order."""
    catalog = _adobe(total)
    gets = _getters(catalog)
    orders = set()
    for seed in range(4):
        slots = select(catalog, [], [], gets, random.Random(seed)).window(0, total, None)
        assert sorted(slots) == list(catalog.alive)
        orders.add(tuple(slots))
    if total >= 100:
        assert len(orders) > 1


@pytest.mark.parametrize("offset", [-300, 0, 330, -600])
def test_fast_formatters_match_the_reference(offset: int) -> None:
    """The table-driven datetime formatters agree with the datetime-based ones."""
    rng = random.Random(offset)
    magento, store = MagentoFormatter(), StoreFormatter(offset)
    samples = [0, 999, 1000, 86_399_999, 1_767_225_599_999, 1_767_225_600_000]
    samples += [rng.randrange(946_684_800_000, 1_893_456_000_000) for _ in range(2000)]
    for ms in samples:
        assert magento.format(ms) == magento_format(ms)
        assert store.format(ms) == store_format(ms, offset)

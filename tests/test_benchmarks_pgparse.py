"""The jsonb cost benchmark (benchmarks/pgparse.py): it times syncd's own payloads, and every
case it names runs against a real server."""

from __future__ import annotations

import json

import psycopg

from benchmarks.pgparse import (
    CASTS,
    INSERTS,
    JSONB_ORDERED,
    PAGE,
    in_jsonb_order,
    measure,
    payload_pages,
)
from benchmarks.stores import scratch_database


def test_the_pages_are_syncd_payloads_of_the_emulator() -> None:
    """Pages of 100 payloads as syncd stores them (canonical JSON: sorted keys, compact), each a
    Magento product of its own sku."""
    pages = payload_pages(2)
    assert [len(page) for page in pages] == [PAGE, PAGE]
    payloads = [payload for page in pages for payload in page]
    products = [json.loads(payload) for payload in payloads]
    assert len({p["sku"] for p in products}) == 2 * PAGE
    canonical = [
        json.dumps(p, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for p in products
    ]
    assert payloads == canonical


def test_every_case_is_timed_and_the_inserts_store_each_payload(postgres_url: str) -> None:
    """Each cast and insert gets a figure; the last insert leaves every payload, as jsonb (in a
    database of its own, as the benchmark's: the test database keeps the store's tables only)."""
    pages = payload_pages(2)
    with scratch_database(postgres_url) as url:
        spent = measure(url, pages)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*), min(jsonb_typeof(payload)) FROM pgparse"
            ).fetchone()
    assert set(spent) == set(CASTS) | set(INSERTS) | {JSONB_ORDERED}
    assert all(ms >= 0 for ms in spent.values())
    assert row == (2 * PAGE, "object")


def test_jsonb_order_puts_shorter_keys_first_at_every_level() -> None:
    """The reordered payload is the same JSON value, its keys as jsonb keeps them."""
    text = '{"bb":1,"a":{"zz":[{"yy":1,"x":2}],"c":3},"ccc":null}'
    ordered = in_jsonb_order(text)
    assert ordered == '{"a":{"c":3,"zz":[{"x":2,"yy":1}]},"bb":1,"ccc":null}'
    assert json.loads(ordered) == json.loads(text)

"""Content hashes and payloads: stable, independent of key order, unchanged by the fast path;
the payload is the canonical text the hash is taken over."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from syncd.codec import canonical
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.sources.adobe_commerce import to_record
from syncd.sources.base import content_hash
from tests.clocks import FakeClock


def _stdlib_text(item: Any) -> str:
    """The definition of the payload: sorted-key, compact, raw-UTF-8 JSON."""
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _stdlib_hash(item: Any) -> str:
    """The definition of the hash: SHA-256 of the payload's text."""
    return hashlib.sha256(_stdlib_text(item).encode()).hexdigest()


def test_a_known_item_keeps_its_hash() -> None:
    """A pinned value: a change here would make every stored product look changed once."""
    item = {"sku": "MH01", "price": 12.5, "name": "Hoodie é", "custom": [{"b": None, "a": True}]}
    expected = "8cb6047ae87b1badb5ea8940c1132b18135d98548e6d5826f0d06f344733d014"
    assert _stdlib_hash(item) == expected
    assert content_hash(item) == expected


def test_the_hash_ignores_key_order() -> None:
    """The same content in another key order hashes the same; other content does not."""
    a = {"sku": "X", "extension_attributes": {"qty": 1, "in_stock": True}, "price": 5}
    b = {"price": 5, "extension_attributes": {"in_stock": True, "qty": 1}, "sku": "X"}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "price": 6})


def test_emulated_products_hash_as_the_standard_library_defines() -> None:
    """Magento-shaped products (untouched and mutated) give the definition's bytes exactly."""
    emu = Emulator(EmulatorConfig(adobe=AdobeConfig(products=400)), FakeClock())
    catalog = emu.adobe.catalog
    for n, sku in enumerate(list(catalog.skus())[::40]):
        catalog.update(sku, price=n + 0.99, name=f"Ünïcode “{n}” \\ / \n")
    for product in catalog.snapshot().values():
        record = to_record(product)
        assert record.content_hash == _stdlib_hash(product)
        assert record.payload == _stdlib_text(product)


def test_integers_beyond_64_bits_take_the_standard_path() -> None:
    """orjson refuses them; the hash falls back to the definition instead of failing."""
    item = {"sku": "BIG", "barcode": 2**70}
    assert canonical(item) == '{"barcode":1180591620717411303424,"sku":"BIG"}'
    assert content_hash(item) == _stdlib_hash(item)


def test_the_payload_is_the_canonical_text_the_hash_is_taken_over() -> None:
    """Keys sorted at every level, compact: one text per content, and its SHA-256 is the hash."""
    record = to_record({"sku": "X", "price": 5, "extension_attributes": {"qty": 1, "a": None}})
    assert record.payload == '{"extension_attributes":{"a":null,"qty":1},"price":5,"sku":"X"}'
    assert record.content_hash == hashlib.sha256(record.payload.encode()).hexdigest()
    reordered = to_record({"extension_attributes": {"a": None, "qty": 1}, "sku": "X", "price": 5})
    assert reordered == record


def test_a_payload_orjson_refuses_is_the_standard_librarys_canonical_text() -> None:
    """The fallback (an integer beyond 64 bits) stores the same canonical form it hashes."""
    record = to_record({"sku": "BIG", "barcode": 2**70, "name": "é"})
    assert record.payload == '{"barcode":1180591620717411303424,"name":"é","sku":"BIG"}'
    assert record.content_hash == _stdlib_hash({"sku": "BIG", "barcode": 2**70, "name": "é"})

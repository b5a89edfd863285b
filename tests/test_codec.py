"""The hot-path JSON codec gives what the standard library gives, and falls back to it."""

from __future__ import annotations

import json
import math

import pytest

from syncd import codec
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from tests.clocks import FakeClock


def test_a_product_page_parses_exactly_as_the_standard_library_does() -> None:
    """Magento-shaped pages, with edited and unicode products, give equal values."""
    emu = Emulator(EmulatorConfig(adobe=AdobeConfig(products=150)), FakeClock())
    catalog = emu.adobe.catalog
    for n, sku in enumerate(list(catalog.skus())[::10]):
        catalog.update(sku, price=n + 0.1, name=f"Ünïcode “{n}” \\ / \t")
    body = json.dumps({"items": list(catalog.snapshot().values()), "total_count": 150}).encode()
    assert codec.loads(body) == json.loads(body)


def test_what_orjson_refuses_is_left_to_the_standard_library() -> None:
    """NaN, lone surrogates and UTF-16 text parse as `json.loads` parses them."""
    assert math.isnan(codec.loads(b'{"price": NaN}')["price"])
    assert codec.loads(b'["\\ud800"]') == ["\ud800"]
    assert codec.loads('{"sku": "é"}'.encode("utf-16")) == {"sku": "é"}


@pytest.mark.parametrize("body", [b"", b"<html>502</html>", b'{"items": [', b"OK\r\n]}{"])
def test_what_is_not_json_is_a_value_error(body: bytes) -> None:
    """The HTTP client turns a ValueError into a retryable 'not the JSON the API documents'."""
    with pytest.raises(ValueError):  # noqa: PT011 - the contract is exactly ValueError
        codec.loads(body)


def test_64_bit_integers_stay_exact() -> None:
    """The whole signed and unsigned 64-bit range parses exactly."""
    values = [2**63 - 1, -(2**63), 2**64 - 1]
    assert codec.loads(json.dumps(values).encode()) == values


def test_rows_for_sqlite_keep_every_text_or_are_refused() -> None:
    """What SQLite's `json_each` reads back exactly is a JSON array; a NUL (which SQLite's JSON
    ends a text at) or a lone surrogate (no Unicode) leaves the caller to bind the values."""
    texts = ["a", 'q"\\', "é\u2028😀", "tab\t"]
    assert json.loads(codec.sql_rows(texts) or "") == texts
    assert json.loads(codec.sql_rows([["a", "b"]]) or "") == [["a", "b"]]
    assert codec.sql_rows(["a\x00b"]) is None
    assert codec.sql_rows(["\ud800"]) is None

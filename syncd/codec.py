"""JSON on the hot path: orjson wherever it gives exactly what the standard library gives.

A full scan parses and re-serialises every product; orjson does both several times faster than
`json`. Where the two differ, the standard library's answer is kept:
- parsing: what orjson refuses (NaN, Infinity, lone surrogates, text that is not UTF-8) goes to
  `json.loads`. One difference stays: an integer beyond 64 bits parses as a float. Neither
  platform can send one (PHP's and .NET's integers are 64-bit), and checking every page for long
  digit runs would cost more than the parse saves;
- canonical text: orjson writes exponents without zero padding (`1e-7`, not `1e-07`); integers
  beyond 64 bits, which it refuses, go to `json.dumps`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson


def loads(body: bytes) -> Any:
    """`json.loads(body)` (but for integers beyond 64 bits), about twice as fast on product
    pages; ValueError if `body` is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)  # more lenient: NaN, lone surrogates, UTF-16 and UTF-32


def compact(item: Mapping[str, Any]) -> str:
    """The item as compact JSON in the key order it arrived in, raw UTF-8 (`json.dumps(item,
    separators=(",", ":"), ensure_ascii=False)`): how a payload is stored."""
    try:
        return orjson.dumps(item).decode()
    except TypeError:
        return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def canonical(item: Mapping[str, Any]) -> str:
    """The item as compact JSON with sorted keys and raw UTF-8 (`json.dumps(item,
    sort_keys=True, separators=(",", ":"), ensure_ascii=False)`): one text per content."""
    try:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

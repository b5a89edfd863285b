"""JSON on the hot path: orjson wherever it gives exactly what the standard library gives.

A full scan parses and re-serialises every product; orjson does both several times faster than
`json`. Where the two differ, the standard library's answer is kept:
- parsing: what orjson refuses (NaN, Infinity, lone surrogates, text that is not UTF-8) goes to
  `json.loads`. One difference stays: an integer beyond 64 bits parses as a float. Neither
  platform can send one (PHP's and .NET's integers are 64-bit), and checking every page for long
  digit runs would cost more than the parse saves;
- canonical text (sorted keys, compact, raw UTF-8: the stored payload and the hash's input):
  orjson writes exponents without zero padding (`1e-7`, not `1e-07`); integers beyond 64 bits,
  which it refuses, go to `json.dumps`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson


class NestingError(ValueError):
    """JSON nested deeper than the parsers allow (orjson: 1024 levels; `json`: the stack)."""


_TOO_DEEP = "nested deeper than syncd reads (about 1000 levels)"


def loads(body: bytes) -> Any:
    """`json.loads(body)` (but for integers beyond 64 bits), about twice as fast on product
    pages; ValueError if `body` is not JSON, NestingError if it is nested too deeply."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise NestingError(_TOO_DEEP) from None
    try:
        return json.loads(body)  # more lenient: NaN, lone surrogates, UTF-16 and UTF-32
    except RecursionError:
        raise NestingError(_TOO_DEEP) from None


def canonical(item: Mapping[str, Any]) -> str:
    """The item as compact JSON with sorted keys and raw UTF-8 (`json.dumps(item,
    sort_keys=True, separators=(",", ":"), ensure_ascii=False)`): one text per content, the
    stored payload and what the content hash is taken over."""
    try:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return _dumps(item)


def canonical_bytes(item: Mapping[str, Any]) -> bytes:
    """`canonical(item)` as UTF-8 bytes, as orjson makes them: the payload's text is decoded from
    them and the hash taken over them, so a product is serialised once."""
    try:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _dumps(item).encode()


def sql_rows(rows: Sequence[str] | Sequence[Sequence[str]]) -> str | None:
    """Texts (or rows of texts) as one JSON array for SQLite's `json_each`; None where SQLite
    would not give every text back whole (a NUL ends one) or a text is no Unicode (a surrogate)."""
    try:
        text = orjson.dumps(rows).decode()
    except TypeError:
        return None
    return None if "\\u0000" in text else text


def _dumps(item: Mapping[str, Any]) -> str:
    """`json.dumps` for what orjson refuses (big integers, over 254 levels of nesting);
    NestingError where the stack runs out."""
    try:
        return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise NestingError(_TOO_DEEP) from None

"""Typed comparisons of one product field, as the stores' databases evaluate them."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from syncd.emulator.catalog import Catalog

FieldKind = Literal["int", "float", "str", "ms", "bool"]
Getter = Callable[[int], Any]


@dataclass(frozen=True, slots=True)
class Predicate:
    """One comparison of a field against an already-typed value."""

    field: str
    op: str
    value: Any
    test: Callable[[int], bool]


def getter(catalog: Catalog, field: str, kind: FieldKind) -> Getter:
    """slot -> comparable value (strings casefolded, as case-insensitive collations compare)."""
    if field == "entity_id":
        return lambda slot: slot + 1
    if field == "sku":
        return lambda slot: catalog.sku_at(slot).casefold()
    if field == "updated_at":
        return catalog.updated_ms
    if field == "created_at":
        return catalog.created_ms
    if kind == "str":
        return lambda slot: _fold(catalog.value(slot, field))
    return lambda slot: catalog.value(slot, field)


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _is_in(current: Any, values: Any) -> bool:
    return current in values


def _not_in(current: Any, values: Any) -> bool:
    return current not in values


# SQL semantics: a NULL column matches none of these.
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": _is_in,
    "nin": _not_in,
}


def predicate(get: Getter, field: str, op: str, value: Any) -> Predicate:
    """Build a predicate; `value` is typed like the getter's results (a frozenset for in/nin)."""
    return Predicate(field, op, value, _tester(get, op, value))


def _tester(get: Getter, op: str, value: Any) -> Callable[[int], bool]:
    compare = _COMPARISONS.get(op)
    if compare is not None:

        def compared(slot: int) -> bool:
            current = get(slot)
            if current is None:
                return False
            try:
                return bool(compare(current, value))
            except TypeError:
                return False

        return compared
    if op in ("null", "notnull"):
        wanted_empty = op == "null"
        return lambda slot: (get(slot) in (None, "")) is wanted_empty
    text = str(value).casefold() if value is not None else ""
    if op in ("like", "nlike"):
        pattern = like_regex(text)
        wanted_match = op == "like"
        return lambda slot: (pattern.fullmatch(_text(get(slot))) is not None) is wanted_match
    if op == "contains":
        return lambda slot: text in _text(get(slot))
    if op == "startwith":
        return lambda slot: _text(get(slot)).startswith(text)
    raise ValueError(f"unknown operator {op!r}")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value).casefold()


def like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (`%`, `_`, backslash escapes) as a case-insensitive regex."""
    parts: list[str] = []
    escaped = False
    for char in pattern.casefold():
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)

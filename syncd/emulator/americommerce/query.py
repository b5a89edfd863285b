"""AmeriCommerce list parameters: `page`, `count`, `sort`, `fields` and the `field=op:value` syntax.

A field's value is one or more `op:value` terms joined by ` AND ` / ` OR ` (`+` in the URL decodes
to a space); AND binds tighter than OR. A field whose value starts with `OR ` is ORed with the AND of
the other fields instead of joining it (docs/query_syntax.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.emulator.americommerce.products import ENGINE_FIELD, FIELD_KINDS
from syncd.emulator.predicates import FieldKind, Getter, Predicate, predicate
from syncd.emulator.selection import SortKey
from syncd.emulator.timefmt import store_parse

RESERVED = frozenset({"page", "count", "sort", "fields", "expand"})
_OPS = {
    "eq": "eq", "not": "neq", "like": "contains", "startwith": "startwith",
    "gt": "gt", "gte": "gteq", "lt": "lt", "lte": "lteq",
}  # fmt: skip
_CONJUNCTION = re.compile(r"\s+(AND|OR)\s+")


class QueryError(Exception):
    """A 400 with the API's error body; `str(error)` is the details."""


@dataclass(slots=True)
class AcQuery:
    """A parsed list request."""

    clauses: list[list[Predicate]] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    page: int = 1
    count: int = 100
    fields: list[str] | None = None


def parse_query(
    query: Mapping[str, str],
    getters: Callable[[str, FieldKind], Getter],
    offset_minutes: int,
) -> AcQuery:
    """Read a products list request; raise `QueryError` for what the store answers 400."""
    parsed = AcQuery(
        page=_positive(query.get("page"), "page", 1),
        count=_positive(query.get("count"), "count", 100),
    )
    if query.get("fields"):
        parsed.fields = [f.strip() for f in query["fields"].split(",") if f.strip()]
    for name in (s.strip() for s in query.get("sort", "").split(",")):
        if not name:
            continue
        descending = name.startswith("-")
        column = name.lstrip("-+")
        if column not in FIELD_KINDS:
            raise QueryError(f"Invalid sort field: {column}")
        parsed.sort.append(SortKey(ENGINE_FIELD.get(column, column), descending))
    ands: list[list[list[Predicate]]] = []
    ors: list[list[list[Predicate]]] = []
    for column, raw in query.items():
        if column in RESERVED:
            continue
        kind = FIELD_KINDS.get(column)
        if kind is None:
            raise QueryError(f"Invalid field: {column}")
        text = raw.strip()
        prefixed_or = text.startswith("OR ")
        runs = _runs(text[3:] if prefixed_or else text, column, kind, getters, offset_minutes)
        (ors if prefixed_or else ands).append(runs)
    if not ors and all(len(runs) == 1 for runs in ands):
        parsed.clauses = [[p] for runs in ands for p in runs[0]]
    elif ands or ors:
        parsed.clauses = [[_expression(ands, ors)]]
    return parsed


def _positive(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d+", raw.strip()):
        raise QueryError(f"The {name} parameter must be a whole number")
    return int(raw)


def _runs(
    text: str,
    column: str,
    kind: FieldKind,
    getters: Callable[[str, FieldKind], Getter],
    offset_minutes: int,
) -> list[list[Predicate]]:
    """The terms of one field grouped into AND-runs (the runs are ORed)."""
    pieces = _CONJUNCTION.split(text)
    runs: list[list[Predicate]] = [[]]
    for index, piece in enumerate(pieces):
        if index % 2 == 1:
            if piece == "OR":
                runs.append([])
            continue
        runs[-1].append(_term(piece, column, kind, getters, offset_minutes))
    return runs


def _term(
    piece: str,
    column: str,
    kind: FieldKind,
    getters: Callable[[str, FieldKind], Getter],
    offset_minutes: int,
) -> Predicate:
    op_name, sep, rest = piece.partition(":")
    if sep and op_name in _OPS:
        op, raw = _OPS[op_name], rest
    else:
        op, raw = "eq", piece
    engine_field = ENGINE_FIELD.get(column, column)
    return predicate(
        getters(engine_field, kind), engine_field, op, _typed(raw, kind, column, offset_minutes)
    )


def _typed(raw: str, kind: FieldKind, column: str, offset_minutes: int) -> Any:
    if kind == "ms":
        ms = store_parse(raw, offset_minutes)
        if ms is None:
            raise QueryError(f"Invalid datetime for {column}: {raw}")
        return ms
    if kind in ("int", "float"):
        try:
            return float(raw)
        except ValueError:
            raise QueryError(f"Invalid number for {column}: {raw}") from None
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise QueryError(f"Invalid boolean for {column}: {raw}")
    return raw.casefold()


def _expression(ands: list[list[list[Predicate]]], ors: list[list[list[Predicate]]]) -> Predicate:
    """One predicate for a query mixing OR: (AND of the plain fields) OR each OR-prefixed field."""

    def field_test(runs: list[list[Predicate]]) -> Callable[[int], bool]:
        tests = [[p.test for p in run] for run in runs]
        return lambda slot: any(all(t(slot) for t in run) for run in tests)

    and_tests = [field_test(runs) for runs in ands]
    or_tests = [field_test(runs) for runs in ors]

    def test(slot: int) -> bool:
        if and_tests and all(t(slot) for t in and_tests):
            return True
        return any(t(slot) for t in or_tests)

    return Predicate("", "expression", None, test)

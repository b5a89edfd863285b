"""Magento's `searchCriteria` query string, read the way the REST input processor reads it.

Keys are accepted in snake_case or camelCase; filters inside a group are ORed, groups are ANDed;
a missing `direction` sorts DESC (the collection processor compares it with ASC); unknown condition
types fall through to MySQL's `IN (value)`, i.e. equality.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from syncd.emulator.adobe.products import FIELD_KINDS
from syncd.emulator.predicates import FieldKind, Getter, Predicate, predicate
from syncd.emulator.selection import SortKey
from syncd.emulator.timefmt import magento_format, magento_parse

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_SORT_FIELD_OK = re.compile(r"^[a-z0-9_]+$", re.IGNORECASE)
_CONDITIONS = {
    "eq": "eq", "neq": "neq", "gt": "gt", "gteq": "gteq", "moreq": "gteq", "from": "gteq",
    "lt": "lt", "lteq": "lteq", "to": "lteq", "in": "in", "nin": "nin", "like": "like",
    "nlike": "nlike", "null": "null", "notnull": "notnull", "finset": "finset",
}  # fmt: skip
_TOP_KEYS = frozenset({"filter_groups", "sort_orders", "page_size", "current_page"})


class CriteriaError(Exception):
    """A 400 with Magento's error body."""

    def __init__(self, message: str, parameters: Mapping[str, Any] | list[Any] | None = None):
        super().__init__(message)
        self.body: dict[str, Any] = {"message": message}
        if parameters is not None:
            self.body["parameters"] = parameters


@dataclass(slots=True)
class Criteria:
    """A parsed request: predicates in conjunctive form, order, paging, and the echo Magento sends."""

    clauses: list[list[Predicate]] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    page_size: int | None = None
    current_page: int | None = None
    echo: dict[str, Any] = field(default_factory=dict)


def parse_criteria(
    query: Mapping[str, str], getters: Callable[[str, FieldKind], Getter], default_size: int | None
) -> Criteria:
    """Read `searchCriteria[...]` parameters; raise `CriteriaError` where Magento answers 400."""
    tree = _nest(query)
    if tree is None:
        raise CriteriaError(
            '"%fieldName" is required. Enter and try again.', {"fieldName": "searchCriteria"}
        )
    for key in tree:
        if key not in _TOP_KEYS:
            raise CriteriaError(
                '"%fieldName" is not supported. Correct the field name and try again.',
                {"fieldName": key},
            )
    criteria = Criteria()
    groups_echo: list[dict[str, Any]] = []
    for group in _entries(tree.get("filter_groups"), "filter_groups"):
        clause: list[Predicate] = []
        filters_echo: list[dict[str, Any]] = []
        for raw in _entries(_as_map(group, "filter_groups").get("filters"), "filters"):
            spec = _as_map(raw, "filters")
            name = _scalar(spec.get("field"), "field")
            value = _scalar(spec.get("value"), "value")
            condition = _scalar(spec.get("condition_type"), "condition_type") or "eq"
            clause.append(_predicate(name, value, condition, getters))
            filters_echo.append({"field": name, "value": value, "condition_type": condition})
        groups_echo.append({"filters": filters_echo})
        if clause:
            criteria.clauses.append(clause)
    criteria.echo["filter_groups"] = groups_echo
    orders_echo: list[dict[str, Any]] = []
    for raw in _entries(tree.get("sort_orders"), "sort_orders"):
        spec = _as_map(raw, "sort_orders")
        name = _scalar(spec.get("field"), "field")
        direction = _scalar(spec.get("direction"), "direction")
        criteria.sort.append(_sort_key(name, direction))
        entry: dict[str, Any] = {"field": name}
        if direction:
            entry["direction"] = direction.upper()
        orders_echo.append(entry)
    if orders_echo:
        criteria.echo["sort_orders"] = orders_echo
    criteria.page_size = _integer(tree.get("page_size"), "pageSize")
    if criteria.page_size is None and default_size is not None:
        criteria.page_size = default_size
    criteria.current_page = _integer(tree.get("current_page"), "currentPage")
    if criteria.page_size is not None:
        criteria.echo["page_size"] = criteria.page_size
    if criteria.current_page is not None:
        criteria.echo["current_page"] = criteria.current_page
    return criteria


def _snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def _nest(query: Mapping[str, str]) -> dict[str, Any] | None:
    """`searchCriteria[a][0][b]=v` pairs as nested dicts; None when searchCriteria is absent."""
    root: dict[str, Any] | None = None
    for key, value in query.items():
        if key == "searchCriteria":
            root = root if root is not None else {}
            continue
        if not key.startswith("searchCriteria["):
            continue
        rest = key[len("searchCriteria") :]
        path = _BRACKETS.findall(rest)
        if "".join(f"[{p}]" for p in path) != rest:
            continue
        root = root if root is not None else {}
        node = root
        for depth, part in enumerate(path):
            name = _snake(part) if part and not part.isdigit() else part
            if name == "":
                name = str(len(node))
            if depth == len(path) - 1:
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise _type_error(name, "string", "array")
                node = child
    return root


def _type_error(name: str, got: str, wanted: str) -> CriteriaError:
    return CriteriaError(
        f'Error occurred during "{name}" processing. The "{got}" value\'s type is invalid. '
        f'The "{wanted}" type was expected. Verify and try again.'
    )


def _entries(node: Any, name: str) -> list[Any]:
    if node is None:
        return []
    if not isinstance(node, dict):
        raise _type_error(name, str(node), "array")
    return list(node.values())


def _as_map(node: Any, name: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise _type_error(name, str(node), "array")
    return node


def _scalar(node: Any, name: str) -> str:
    if node is None:
        return ""
    if isinstance(node, dict):
        raise _type_error(name, "array", "string")
    return str(node)


def _integer(node: Any, name: str) -> int | None:
    if node is None:
        return None
    text = _scalar(node, name).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise _type_error(name, text, "int")
    return int(text)


def _predicate(
    name: str, raw: str, condition: str, getters: Callable[[str, FieldKind], Getter]
) -> Predicate:
    column = name
    kind = FIELD_KINDS.get(column)
    if kind is None:
        raise CriteriaError("Invalid attribute name: %1", [name])
    op = _CONDITIONS.get(condition, "eq")
    get = getters(column, kind)
    if op in ("null", "notnull"):
        return predicate(get, column, op, None)
    if op in ("like", "nlike"):
        if kind == "ms":
            # LIKE compares the DATETIME's text, not its value.
            return predicate(lambda s: magento_format(get(s)), "", op, raw)
        return predicate(get, column, op, raw)
    if op == "finset":
        target = raw.casefold()
        return predicate(lambda s: target in str(get(s) or "").split(","), "", "eq", True)
    if op in ("in", "nin"):
        values = frozenset(_typed(part.strip(), kind, name) for part in raw.split(","))
        return predicate(get, column, op, values)
    if condition not in _CONDITIONS and "," in raw:
        values = frozenset(_typed(part.strip(), kind, name) for part in raw.split(","))
        return predicate(get, column, "in", values)
    return predicate(get, column, op, _typed(raw, kind, name))


def _typed(raw: str, kind: FieldKind, name: str) -> Any:
    if kind == "ms":
        ms = magento_parse(raw)
        if ms is None:
            raise CriteriaError(
                'Invalid value of "%value" provided for the %fieldName field.',
                {"value": raw, "fieldName": name},
            )
        return ms
    if kind in ("int", "float"):
        # MySQL casts a non-numeric string to 0 when it meets a number.
        match = re.match(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)", raw)
        return float(match.group(0)) if match else 0.0
    return raw.casefold()


def _sort_key(name: str, direction: str) -> SortKey:
    if not _SORT_FIELD_OK.match(name):
        raise CriteriaError("Sort order field %1 contains restricted symbols", [name])
    if direction and direction.upper() not in ("ASC", "DESC"):
        raise CriteriaError(
            "The sort order has to be specified as %1 for ascending order or %2 for descending order.",
            ["ASC", "DESC"],
        )
    if name not in FIELD_KINDS:
        # An unknown column reaches MySQL, and Magento masks the PDOException.
        raise CriteriaError(
            "Internal Error. Details are available in Magento log file. Report ID: webapi-5f3e1a2b9c7d4"
        )
    return SortKey(name, descending=direction.upper() != "ASC")

"""Magento's `fields` partial-response parameter: `items[sku,updated_at],total_count`."""

from __future__ import annotations

from typing import Any

# name -> nested selection, or None for "the whole value".
FieldTree = dict[str, "FieldTree | None"]


def parse_fields(spec: str) -> FieldTree | None:
    """The selection tree of a `fields` value; None when it is empty or its brackets do not balance."""
    text = spec.replace(" ", "")
    if not text:
        return None
    tree, end = _parse_list(text, 0)
    return tree if end == len(text) else None


def _parse_list(text: str, pos: int) -> tuple[FieldTree, int]:
    tree: FieldTree = {}
    while pos < len(text):
        start = pos
        while pos < len(text) and text[pos] not in ",[]":
            pos += 1
        name = text[start:pos]
        sub: FieldTree | None = None
        if pos < len(text) and text[pos] == "[":
            sub, pos = _parse_list(text, pos + 1)
            if pos < 0 or pos >= len(text) or text[pos] != "]":
                return tree, -1
            pos += 1
        if name:
            tree[name] = sub
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        break
    return tree, pos


def project(value: Any, tree: FieldTree | None) -> Any:
    """Keep only the selected keys (in the value's own order); lists are projected item by item."""
    if tree is None:
        return value
    if isinstance(value, list):
        return [project(item, tree) for item in value]
    if isinstance(value, dict):
        return {k: project(v, tree[k]) for k, v in value.items() if k in tree}
    return value

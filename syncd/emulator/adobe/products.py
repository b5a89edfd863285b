"""Magento 2 products: what `GET /rest/V1/products` renders for each item, derived from the seed.

The dict rendering is the definition; the byte rendering is a hand-rolled fast path for products
nobody has changed, kept byte-identical to `json.dumps(render(row), separators=(",", ":"))`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from syncd.emulator.catalog import Row, attributes, mix
from syncd.emulator.predicates import FieldKind
from syncd.emulator.timefmt import MagentoFormatter, magento_format

_ADJECTIVES = (
    "Breathe-Easy", "Summit", "Aero", "Cruise", "Endeavor", "Driven", "Sprite", "Affirm",
    "Compete", "Fusion", "Push It", "Overnight", "Strive", "Wayfarer", "Impulse", "Rival",
)  # fmt: skip
_MATERIALS = ("Cotton", "Wool", "Fleece", "Nylon", "Leather", "Canvas", "Mesh", "Bamboo")
_NOUNS = (
    "Tank", "Hoodie", "Jacket", "Tee", "Short", "Pant", "Backpack", "Duffle", "Watch",
    "Bottle", "Yoga Mat", "Messenger Bag", "Sneaker", "Cap", "Bra", "Legging",
)  # fmt: skip
_SKU_PREFIXES = ("24-MB", "24-WG", "MH", "MJ", "MS", "WB", "WH", "WJ", "WS", "WT")
_CUSTOM_ORDER = (
    "description", "url_key", "category_ids", "options_container",
    "required_options", "has_options", "tax_class_id",
)  # fmt: skip
_TOP: dict[str, type | tuple[type, ...]] = {
    "name": str, "price": (int, float), "status": int, "visibility": int,
    "type_id": str, "attribute_set_id": int, "weight": (int, float),
}  # fmt: skip
_STOCK: dict[str, type | tuple[type, ...]] = {"qty": (int, float), "is_in_stock": bool}
_FROZEN = frozenset({"id", "entity_id", "sku", "created_at", "extension_attributes"})

FIELD_KINDS: dict[str, FieldKind] = {
    "entity_id": "int", "sku": "str", "updated_at": "ms", "created_at": "ms", "name": "str",
    "price": "float", "status": "int", "visibility": "int", "type_id": "str",
    "attribute_set_id": "int", "weight": "float", "url_key": "str", "tax_class_id": "str",
    "description": "str",
}  # fmt: skip


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


class _Derived(NamedTuple):
    name: int
    attribute_set_id: int
    price: int | float
    status: int
    visibility: int
    type_id: str
    weight: int | float | None
    qty: int
    category: str


class AdobeProductModel:
    """Magento catalog products (simple and virtual) with stock items and custom attributes."""

    sku_field = "sku"
    resolution_ms = 1000

    def __init__(self, seed: int) -> None:
        self._seed = mix(seed, 0xADB)
        # 2048 possible names: their derived strings are computed once, not per product.
        self._names = [
            f"{_ADJECTIVES[i & 15]} {_MATERIALS[(i >> 4) & 7]} {_NOUNS[(i >> 7) & 15]}"
            for i in range(2048)
        ]
        self._descriptions = [
            f"<p>The {n.lower()} is built for everyday wear.</p>" for n in self._names
        ]
        self._slugs = [n.lower().replace(" ", "-") for n in self._names]
        self._times = MagentoFormatter()

    def sku_for(self, entity_id: int) -> str:
        """A Luma-style sku, unique by construction (the id is part of it)."""
        prefix = _SKU_PREFIXES[mix(self._seed, entity_id) % len(_SKU_PREFIXES)]
        return f"{prefix}{entity_id:07d}"

    def _derive(self, entity_id: int) -> _Derived:
        h = mix(self._seed, entity_id)
        virtual = (h >> 11) % 33 == 0
        qty = (h >> 20) % 400 if (h >> 29) % 9 else 0
        return _Derived(
            h & 2047,
            (4, 4, 4, 9, 10, 15)[(h >> 12) % 6],
            _number(5 + ((h >> 32) % 49_500) / 100),
            2 if (h >> 48) % 20 == 0 else 1,
            1 if (h >> 52) % 10 == 0 else 4,
            "virtual" if virtual else "simple",
            None if virtual else _number(((h >> 40) % 200 + 5) / 10),
            qty,
            str(3 + (h >> 56) % 40),
        )

    def defaults(self, entity_id: int) -> dict[str, Any]:
        """The generated values of the mutable attributes."""
        d = self._derive(entity_id)
        return {
            "name": self._names[d.name],
            "attribute_set_id": d.attribute_set_id,
            "price": d.price,
            "status": d.status,
            "visibility": d.visibility,
            "type_id": d.type_id,
            "weight": d.weight,
            "qty": d.qty,
            "is_in_stock": d.qty > 0,
            "description": self._descriptions[d.name],
            "url_key": f"{self._slugs[d.name]}-{entity_id}",
            "category_ids": [d.category],
            "options_container": "container2",
            "required_options": "0",
            "has_options": "0",
            "tax_class_id": "2",
        }

    def normalize(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Top-level attributes, stock (`qty`, `is_in_stock`) or any custom attribute code."""
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if key in _FROZEN:
                raise ValueError(f"{key} cannot be changed")
            expected = _TOP.get(key) or _STOCK.get(key)
            if expected is not None and not (value is None or isinstance(value, expected)):
                raise ValueError(f"{key}={value!r} has the wrong type")
            if key in ("price", "weight", "qty") and value is not None:
                value = _number(value)
            if key == "custom_attributes":
                out.update(dict(value))
                continue
            out[key] = value
        return out

    def _attrs(self, row: Row) -> dict[str, Any]:
        return attributes(self.defaults(row.entity_id), row)

    def render(self, row: Row) -> dict[str, Any]:
        """The item as Magento's product repository serializes it."""
        a = self._attrs(row)
        eid = row.entity_id
        custom = [c for c in _CUSTOM_ORDER if c in a]
        custom += [k for k in a if k not in _TOP and k not in _STOCK and k not in _CUSTOM_ORDER]
        item: dict[str, Any] = {
            "id": eid,
            "sku": row.sku,
            "name": a["name"],
            "attribute_set_id": a["attribute_set_id"],
            "price": a["price"],
            "status": a["status"],
            "visibility": a["visibility"],
            "type_id": a["type_id"],
            "created_at": magento_format(row.created_ms),
            "updated_at": magento_format(row.updated_ms),
        }
        if a.get("weight") is not None:
            item["weight"] = a["weight"]
        item["extension_attributes"] = {
            "website_ids": [1],
            "category_links": [
                {"position": 0, "category_id": c} for c in (a.get("category_ids") or [])
            ],
            "stock_item": {
                "item_id": eid,
                "product_id": eid,
                "stock_id": 1,
                "qty": a["qty"],
                "is_in_stock": a["is_in_stock"],
                "is_qty_decimal": False,
                "min_sale_qty": 1,
                "max_sale_qty": 10000,
                "manage_stock": True,
                "low_stock_date": None,
            },
        }
        item["product_links"] = []
        item["options"] = []
        item["media_gallery_entries"] = []
        item["tier_prices"] = []
        item["custom_attributes"] = [{"attribute_code": c, "value": a[c]} for c in custom]
        return item

    def render_bytes(self, row: Row) -> bytes:
        """Compact JSON; untouched products skip the dict entirely."""
        if row.overrides:
            return json.dumps(self.render(row), separators=(",", ":")).encode()
        d = self._derive(row.entity_id)
        eid = row.entity_id
        fmt = self._times.format
        created = fmt(row.created_ms)
        updated = created if row.updated_ms == row.created_ms else fmt(row.updated_ms)
        weight = "" if d.weight is None else f',"weight":{d.weight!r}'
        stock = "true" if d.qty > 0 else "false"
        return (
            f'{{"id":{eid},"sku":"{row.sku}","name":"{self._names[d.name]}",'
            f'"attribute_set_id":{d.attribute_set_id},"price":{d.price!r},'
            f'"status":{d.status},"visibility":{d.visibility},"type_id":"{d.type_id}",'
            f'"created_at":"{created}","updated_at":"{updated}"{weight},'
            f'"extension_attributes":{{"website_ids":[1],"category_links":'
            f'[{{"position":0,"category_id":"{d.category}"}}],'
            f'"stock_item":{{"item_id":{eid},"product_id":{eid},"stock_id":1,"qty":{d.qty},'
            f'"is_in_stock":{stock},"is_qty_decimal":false,"min_sale_qty":1,'
            f'"max_sale_qty":10000,"manage_stock":true,"low_stock_date":null}}}},'
            f'"product_links":[],"options":[],"media_gallery_entries":[],"tier_prices":[],'
            f'"custom_attributes":[{{"attribute_code":"description",'
            f'"value":"{self._descriptions[d.name]}"}},'
            f'{{"attribute_code":"url_key","value":"{self._slugs[d.name]}-{eid}"}},'
            f'{{"attribute_code":"category_ids","value":["{d.category}"]}},'
            f'{{"attribute_code":"options_container","value":"container2"}},'
            f'{{"attribute_code":"required_options","value":"0"}},'
            f'{{"attribute_code":"has_options","value":"0"}},'
            f'{{"attribute_code":"tax_class_id","value":"2"}}]}}'
        ).encode()

    def value(self, row: Row, field: str) -> Any:
        """Comparable values for filters and sorts on the attributes Magento can filter."""
        if field not in FIELD_KINDS:
            raise KeyError(field)
        if field == "entity_id":
            return row.entity_id
        if field == "sku":
            return row.sku
        if field == "updated_at":
            return row.updated_ms
        if field == "created_at":
            return row.created_ms
        value = self._attrs(row).get(field)
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return value

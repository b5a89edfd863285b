"""AmeriCommerce products as `GET /api/v1/products` renders them (a subset of the documented model)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from syncd.emulator.catalog import Row, attributes, mix
from syncd.emulator.predicates import FieldKind
from syncd.emulator.timefmt import StoreFormatter

_ADJECTIVES = ("Natalie", "Harbor", "Juniper", "Monarch", "Sierra", "Aspen", "Cobalt", "Willow")
_NOUNS = (
    "Dining Table Set", "Floor Lamp", "Area Rug", "Bookcase", "Office Chair", "Nightstand",
    "Bar Stool", "Wall Mirror", "Coffee Table", "Throw Pillow", "Sofa", "Desk",
)  # fmt: skip
_PREFIXES = ("ACM", "HB", "JN", "MN", "SR")

FIELD_KINDS: dict[str, FieldKind] = {
    "id": "int", "item_number": "str", "item_name": "str", "manufacturer_id": "int",
    "primary_category_id": "int", "product_status_id": "int", "short_description": "str",
    "weight": "float", "cost": "float", "price": "float", "retail": "float",
    "quantity_on_hand": "int", "is_hidden": "bool", "is_spotlight_item": "bool",
    "is_discontinued": "bool", "is_non_taxable": "bool", "created_at": "ms", "updated_at": "ms",
    "url_rewrite": "str", "gtin": "str", "sort_order": "int",
}  # fmt: skip
# What the engine calls these columns.
ENGINE_FIELD = {"id": "entity_id", "item_number": "sku"}
_FROZEN = frozenset({"id", "item_number", "created_at"})


def _money(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 2)


class _Derived(NamedTuple):
    name: int
    collection: str
    manufacturer_id: int
    category_id: int
    weight: int | float
    cost: int | float
    price: int | float
    retail: int | float
    spotlight: int
    quantity: int
    hidden: int
    discontinued: bool


class AmeriCommerceProductModel:
    """Flat AmeriCommerce product records; times rendered in the store's zone."""

    sku_field = "item_number"
    resolution_ms = 1

    def __init__(self, seed: int, utc_offset_minutes: int) -> None:
        self._seed = mix(seed, 0xAC)
        self._times = StoreFormatter(utc_offset_minutes)
        self._names = [f"{_ADJECTIVES[i & 7]} {_NOUNS[i >> 3]}" for i in range(8 * len(_NOUNS))]
        self._slugs = [name.replace(" ", "-") for name in self._names]

    def sku_for(self, entity_id: int) -> str:
        """An item number, unique by construction."""
        return f"{_PREFIXES[mix(self._seed, entity_id) % len(_PREFIXES)]}-{entity_id:06d}"

    def _derive(self, entity_id: int) -> _Derived:
        h = mix(self._seed, entity_id)
        price = _money(10 + ((h >> 8) % 99_000) / 100)
        return _Derived(
            (h & 7) | ((h >> 3) % 12) << 3,
            _ADJECTIVES[(h >> 34) & 7],
            (h >> 24) % 12,
            1 + (h >> 28) % 30,
            _money(((h >> 38) % 900 + 10) / 10),
            _money(round(price * 0.55, 2)),
            price,
            _money(round(price * 1.2, 2)),
            1 if (h >> 48) % 10 == 0 else 0,
            (h >> 50) % 250,
            1 if (h >> 58) % 25 == 0 else 0,
            (h >> 61) == 0,
        )

    def defaults(self, entity_id: int) -> dict[str, Any]:
        """The generated values of every field but id, item_number and the timestamps."""
        d = self._derive(entity_id)
        name = self._names[d.name]
        return {
            "supplier_id": 0,
            "manufacturer_id": d.manufacturer_id,
            "manufacturer_part_number": "",
            "primary_category_id": d.category_id,
            "product_status_id": 1,
            "item_name": name,
            "short_description": f"{name} from our {d.collection} collection",
            "height": "",
            "length": "",
            "width": "",
            "size_unit": "In",
            "weight": d.weight,
            "weight_unit": "Lbs",
            "cost": d.cost,
            "price": d.price,
            "retail": d.retail,
            "minimum_quantity": 0,
            "maximum_quantity": 0,
            "is_spotlight_item": d.spotlight,
            "quantity_on_hand": d.quantity,
            "keywords": "",
            "is_non_taxable": 0,
            "is_shipped_individually": 0,
            "is_hidden": d.hidden,
            "sort_order": 0,
            "meta_description": "",
            "page_title": "",
            "url_rewrite": f"/{self._slugs[d.name]}-{entity_id}.aspx",
            "is_kit": False,
            "is_child_product": False,
            "is_non_inventory": False,
            "is_discontinued": d.discontinued,
            "eta_date": None,
            "gtin": "",
            "tax_code": "",
            "quantity_increment": 1,
        }

    def normalize(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Any documented field but id, item_number and created_at; values must be JSON scalars."""
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if key in _FROZEN:
                raise ValueError(f"{key} cannot be changed")
            if value is not None and not isinstance(value, str | int | float | bool):
                raise ValueError(f"{key}={value!r} is not a JSON scalar")
            out[key] = value
        return out

    def _attrs(self, row: Row) -> dict[str, Any]:
        return attributes(self.defaults(row.entity_id), row)

    def render(self, row: Row) -> dict[str, Any]:
        """The product record in the documented field order (id and item_number first)."""
        a = self._attrs(row)
        out: dict[str, Any] = {"id": row.entity_id, "item_number": row.sku}
        for key, value in a.items():
            if key == "is_kit":
                out["created_at"] = self._times.format(row.created_ms)
                out["updated_at"] = self._times.format(row.updated_ms)
            out[key] = value
        return out

    def render_bytes(self, row: Row) -> bytes:
        """Compact JSON of `render`; untouched products skip the dict entirely."""
        if row.overrides:
            return json.dumps(self.render(row), separators=(",", ":")).encode()
        d = self._derive(row.entity_id)
        eid = row.entity_id
        name = self._names[d.name]
        created = self._times.format(row.created_ms)
        updated = (
            created if row.updated_ms == row.created_ms else self._times.format(row.updated_ms)
        )
        return (
            f'{{"id":{eid},"item_number":"{row.sku}","supplier_id":0,'
            f'"manufacturer_id":{d.manufacturer_id},"manufacturer_part_number":"",'
            f'"primary_category_id":{d.category_id},"product_status_id":1,"item_name":"{name}",'
            f'"short_description":"{name} from our {d.collection} collection",'
            f'"height":"","length":"","width":"","size_unit":"In","weight":{d.weight!r},'
            f'"weight_unit":"Lbs","cost":{d.cost!r},"price":{d.price!r},"retail":{d.retail!r},'
            f'"minimum_quantity":0,"maximum_quantity":0,"is_spotlight_item":{d.spotlight},'
            f'"quantity_on_hand":{d.quantity},"keywords":"","is_non_taxable":0,'
            f'"is_shipped_individually":0,"is_hidden":{d.hidden},"sort_order":0,'
            f'"meta_description":"","page_title":"",'
            f'"url_rewrite":"/{self._slugs[d.name]}-{eid}.aspx",'
            f'"created_at":"{created}","updated_at":"{updated}","is_kit":false,'
            f'"is_child_product":false,"is_non_inventory":false,'
            f'"is_discontinued":{"true" if d.discontinued else "false"},"eta_date":null,'
            f'"gtin":"","tax_code":"","quantity_increment":1}}'
        ).encode()

    def value(self, row: Row, field: str) -> Any:
        """Comparable values for the query syntax and `sort`."""
        if field in ("id", "entity_id"):
            return row.entity_id
        if field in ("item_number", "sku"):
            return row.sku
        if field == "updated_at":
            return row.updated_ms
        if field == "created_at":
            return row.created_ms
        if field not in FIELD_KINDS:
            raise KeyError(field)
        value = self._attrs(row).get(field)
        if FIELD_KINDS[field] == "bool" and value is not None:
            return bool(value)
        return value

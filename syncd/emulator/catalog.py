"""A compact, mutable product catalog with sorted indexes and per-product pre-serialized JSON.

Columns live in arrays indexed by slot (slot = entity id - 1); everything else a product shows is
derived from the seed and its id unless a mutation overrode it, so a million products cost little.
Indexes by updated_at, by created_at and by sku are built on first use and kept up to date by every
mutation.
"""

from __future__ import annotations

import bisect
import random
from array import array
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from syncd.clock import Clock
from syncd.emulator.timefmt import to_ms

_MASK64 = (1 << 64) - 1
_SLOT_BITS = 32
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_YEAR_MS = 365 * 86_400_000


def mix(seed: int, value: int) -> int:
    """A cheap 64-bit hash (splitmix64 finaliser): the source of every derived attribute."""
    z = (value * 0x9E3779B97F4A7C15 + seed) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class Row(NamedTuple):
    """The stored part of one product."""

    entity_id: int
    sku: str
    created_ms: int
    updated_ms: int
    overrides: Mapping[str, Any] | None


class ProductModel(Protocol):
    """How one platform names, derives, validates and renders a product."""

    sku_field: str
    resolution_ms: int

    def sku_for(self, entity_id: int) -> str:
        """The generated sku of a product."""
        ...

    def normalize(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Validate mutation fields and map them to override keys; raise ValueError if refused."""
        ...

    def render(self, row: Row) -> dict[str, Any]:
        """The product exactly as a listing shows it."""
        ...

    def render_bytes(self, row: Row) -> bytes:
        """`render` serialized to compact JSON (a fast path, equal to json.dumps of `render`)."""
        ...

    def value(self, row: Row, field: str) -> Any:
        """A field's comparable value for filters and sorts; KeyError for an unknown field."""
        ...


def attributes(defaults: dict[str, Any], row: Row) -> dict[str, Any]:
    """A product's attributes: its model's `defaults` with the row's mutations laid over them."""
    if row.overrides:
        defaults.update(row.overrides)
    return defaults


def _sku_key(sku: str) -> str:
    # Both stores compare skus through case-insensitive collations.
    return sku.casefold()


class Catalog:
    """Products by sku; safe to mutate between requests while a sync pages through it."""

    def __init__(
        self,
        model: ProductModel,
        clock: Clock,
        count: int,
        rng: random.Random,
        until: datetime | None = None,
    ) -> None:
        self._model = model
        self._clock = clock
        # Generated history ends at `until` (default: now); a fixed `until` makes the catalog the
        # same in every process, which is what lets a restarted demo show a true incremental run.
        end = to_ms(until if until is not None else clock.now())
        self._created, self._updated = _generate_times(count, end, rng, model)
        self._skus: list[str | None] = [model.sku_for(slot + 1) for slot in range(count)]
        self._overrides: list[dict[str, Any] | None] = [None] * count
        self._cache: list[bytes | None] = [None] * count
        self._by_sku: dict[str, int] = {sku: slot for slot, sku in enumerate(self._skus) if sku}
        if len(self._by_sku) != count:
            raise ValueError("generated skus collide; the product model must make them unique")
        self._alive = array("q", range(count))
        self._updated_index: list[int] | None = None
        self._created_index: list[int] | None = None
        self._sku_index: list[str] | None = None

    # -- the public, test-facing surface -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_sku)

    def __contains__(self, sku: object) -> bool:
        return sku in self._by_sku

    def insert(self, **fields: Any) -> str:
        """Add a product (created and updated now unless given); returns its sku."""
        slot = len(self._skus)
        sku = str(fields.pop(self._model.sku_field, None) or self._model.sku_for(slot + 1))
        if sku in self._by_sku:
            raise ValueError(f"sku {sku!r} already exists")
        now = self._now_ms()
        created = self._explicit_ms(fields.pop("created_at", None)) or now
        updated = self._explicit_ms(fields.pop("updated_at", None)) or max(now, created)
        overrides = self._model.normalize(fields) if fields else None
        self._skus.append(sku)
        self._created.append(created)
        self._updated.append(updated)
        self._overrides.append(overrides or None)
        self._cache.append(None)
        self._by_sku[sku] = slot
        self._alive.append(slot)
        if self._updated_index is not None:
            bisect.insort(self._updated_index, (updated << _SLOT_BITS) | slot)
        if self._created_index is not None:
            bisect.insort(self._created_index, (created << _SLOT_BITS) | slot)
        if self._sku_index is not None:
            bisect.insort(self._sku_index, sku, key=_sku_key)
        return sku

    def update(self, sku: str, /, *, touch: bool = True, **fields: Any) -> None:
        """Change fields; bumps updated_at to now unless `touch=False` (stock and mass updates)."""
        slot = self._slot(sku)
        explicit = self._explicit_ms(fields.pop("updated_at", None))
        if fields:
            normalized = self._model.normalize(fields)
            current = self._overrides[slot]
            self._overrides[slot] = {**current, **normalized} if current else normalized
        if explicit is not None:
            self._set_updated(slot, explicit)
        elif touch:
            self._set_updated(slot, max(self._now_ms(), self._created[slot]))
        self._cache[slot] = None

    def delete(self, sku: str) -> None:
        """Remove a product."""
        slot = self._slot(sku)
        del self._by_sku[sku]
        self._skus[slot] = None
        self._cache[slot] = None
        self._overrides[slot] = None
        del self._alive[bisect.bisect_left(self._alive, slot)]
        if self._updated_index is not None:
            key = (self._updated[slot] << _SLOT_BITS) | slot
            del self._updated_index[bisect.bisect_left(self._updated_index, key)]
        if self._created_index is not None:
            key = (self._created[slot] << _SLOT_BITS) | slot
            del self._created_index[bisect.bisect_left(self._created_index, key)]
        if self._sku_index is not None:
            index = self._sku_index
            at = bisect.bisect_left(index, _sku_key(sku), key=_sku_key)
            while index[at] != sku:  # skus equal but for case sort together
                at += 1
            del index[at]

    def get(self, sku: str) -> dict[str, Any]:
        """The product as the API renders it; KeyError if there is none."""
        return self._model.render(self.row(self._slot(sku)))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """sku -> product as a listing renders it, for comparing a synced database with the source."""
        return {self._skus[slot] or "": self._model.render(self.row(slot)) for slot in self._alive}

    def skus(self) -> Iterator[str]:
        """Skus in entity-id order."""
        for slot in self._alive:
            yield self._skus[slot] or ""

    # -- what the request handlers read --------------------------------------------------------

    def row(self, slot: int) -> Row:
        """The stored part of the product in `slot`."""
        return Row(
            slot + 1,
            self._skus[slot] or "",
            self._created[slot],
            self._updated[slot],
            self._overrides[slot],
        )

    def exists(self, slot: int) -> bool:
        """Whether a slot holds a live product."""
        return 0 <= slot < len(self._skus) and self._skus[slot] is not None

    def slot_of(self, sku: str) -> int | None:
        """The slot of a sku, or None."""
        return self._by_sku.get(sku)

    def render_bytes(self, slot: int) -> bytes:
        """The product's JSON, serialized once per revision of that product."""
        cached = self._cache[slot]
        if cached is None:
            cached = self._model.render_bytes(self.row(slot))
            self._cache[slot] = cached
        return cached

    def render(self, slot: int) -> dict[str, Any]:
        """The product as a dict."""
        return self._model.render(self.row(slot))

    def value(self, slot: int, field: str) -> Any:
        """A comparable field value (KeyError for fields the model does not know)."""
        return self._model.value(self.row(slot), field)

    def updated_ms(self, slot: int) -> int:
        """updated_at in epoch ms."""
        return self._updated[slot]

    def created_ms(self, slot: int) -> int:
        """created_at in epoch ms."""
        return self._created[slot]

    def sku_at(self, slot: int) -> str:
        """The sku in a slot ('' once deleted)."""
        return self._skus[slot] or ""

    @property
    def alive(self) -> array[int]:
        """Live slots in entity-id order (do not mutate)."""
        return self._alive

    def updated_index(self) -> list[int]:
        """Sorted keys `updated_ms << 32 | slot` (built on first use)."""
        if self._updated_index is None:
            updated = self._updated
            self._updated_index = sorted((updated[s] << _SLOT_BITS) | s for s in self._alive)
        return self._updated_index

    def created_index(self) -> list[int]:
        """Sorted keys `created_ms << 32 | slot` (built on first use; created_at never changes)."""
        if self._created_index is None:
            created = self._created
            self._created_index = sorted((created[s] << _SLOT_BITS) | s for s in self._alive)
        return self._created_index

    def sku_index(self) -> list[str]:
        """Skus in collation order (built on first use)."""
        if self._sku_index is None:
            self._sku_index = sorted(self._by_sku, key=_sku_key)
        return self._sku_index

    # -- internals -----------------------------------------------------------------------------

    def _slot(self, sku: str) -> int:
        slot = self._by_sku.get(sku)
        if slot is None:
            raise KeyError(sku)
        return slot

    def _now_ms(self) -> int:
        now = to_ms(self._clock.now())
        return now - now % self._model.resolution_ms

    def _explicit_ms(self, value: object) -> int | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError("created_at / updated_at must be timezone-aware datetimes")
        ms = to_ms(value)
        return ms - ms % self._model.resolution_ms

    def _set_updated(self, slot: int, updated: int) -> None:
        old = self._updated[slot]
        if old == updated:
            return
        if self._updated_index is not None:
            index = self._updated_index
            del index[bisect.bisect_left(index, (old << _SLOT_BITS) | slot)]
            bisect.insort(index, (updated << _SLOT_BITS) | slot)
        self._updated[slot] = updated


def slot_of_key(key: int) -> int:
    """The slot half of an updated- or created-index key."""
    return key & _SLOT_MASK


def ms_of_key(key: int) -> int:
    """The time half (updated_at or created_at) of an index key."""
    return key >> _SLOT_BITS


def key_bounds(ms: int) -> tuple[int, int]:
    """The smallest and largest index keys carrying `ms`."""
    return ms << _SLOT_BITS, (ms << _SLOT_BITS) | _SLOT_MASK


def _generate_times(
    count: int, now_ms: int, rng: random.Random, model: ProductModel
) -> tuple[array[int], array[int]]:
    """created_at rising with the id over the past year; updated_at later, often shared by a batch."""
    resolution = model.resolution_ms
    start = now_ms - _YEAR_MS
    step = _YEAR_MS // max(count, 1)
    created = array("q", bytes(8 * count))
    updated = array("q", bytes(8 * count))
    # Imports and mass actions save a run of products within one second: about 30% of them here.
    biggest = max(2, min(400, count // 40))
    smallest = min(20, biggest)
    batch_chance = 0.3 / (0.7 * (smallest + biggest) / 2)
    draw = rng.random
    batch_left = 0
    batch_ms = 0
    for slot in range(count):
        c = start + slot * step + int(draw() * step)
        if batch_left:
            batch_left -= 1
            u = batch_ms
        else:
            roll = draw()
            if roll < batch_chance:
                batch_left = smallest + int(draw() * (biggest - smallest))
                earliest = min(now_ms, c + (batch_left + 1) * step)
                batch_ms = earliest + int(draw() * (now_ms - earliest))
                u = batch_ms
            elif roll < 0.45:
                u = c
            else:
                u = c + int((now_ms - c) * draw() ** 2)
        c -= c % resolution
        u -= u % resolution
        created[slot] = c
        updated[slot] = u
    return created, updated

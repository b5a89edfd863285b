"""Filter, order and page a catalog without sorting it per request.

Filters arrive in conjunctive form (AND of ORs). A range on the first sort key narrows a sorted index
with `bisect`; what is left is checked product by product. Orders no index realizes are sorted on the
matches only. Like the databases behind both stores, rows the requested order does not tell apart
come back in an arbitrary order that changes from request to request, and so does a listing with no
order at all (equal-size chunks shuffled by a per-request affine permutation, O(1) per position).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.emulator.catalog import Catalog, key_bounds, ms_of_key, slot_of_key
from syncd.emulator.predicates import Getter, Predicate

UNIQUE_FIELDS = frozenset({"entity_id", "sku"})
_TIME_FIELDS = ("updated_at", "created_at")
_RANGE_OPS = frozenset({"eq", "gt", "gteq", "lt", "lteq"})
_CHUNK = 37


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORDER BY term."""

    field: str
    descending: bool = False


class Selection:
    """The matching products in order; `window` is one page of slots."""

    total: int

    def at(self, position: int) -> int:
        """The slot at a position of the ordered result."""
        raise NotImplementedError

    def tie(self, position: int) -> Hashable | None:
        """What the order compares at a position; None when the order is total."""
        return None

    def window(self, start: int, stop: int, rng: random.Random | None) -> list[int]:
        """Slots in [start, stop); runs of ties are shuffled with `rng` when given."""
        stop = min(stop, self.total)
        if start >= stop:
            return []
        if rng is None or self.tie(start) is None:
            return [self.at(i) for i in range(start, stop)]
        out: list[int] = []
        i = start
        while i < stop:
            key = self.tie(i)
            lo = i
            while lo > 0 and self.tie(lo - 1) == key:
                lo -= 1
            hi = i + 1
            while hi < self.total and self.tie(hi) == key:
                hi += 1
            if hi - lo == 1:
                out.append(self.at(i))
                i += 1
                continue
            run = [self.at(j) for j in range(lo, hi)]
            rng.shuffle(run)
            end = min(stop, hi)
            out.extend(run[i - lo : end - lo])
            i = end
        return out


class _Range(Selection):
    def __init__(
        self,
        seq: Sequence[int] | Sequence[str],
        lo: int,
        hi: int,
        descending: bool,
        decode: Callable[[Any], int],
        tie: Callable[[Any], Hashable] | None,
    ) -> None:
        self._seq = seq
        self._lo = lo
        self._hi = hi
        self._desc = descending
        self._decode = decode
        self._tie = tie
        self.total = max(0, hi - lo)

    def _index(self, position: int) -> int:
        return self._hi - 1 - position if self._desc else self._lo + position

    def at(self, position: int) -> int:
        return self._decode(self._seq[self._index(position)])

    def tie(self, position: int) -> Hashable | None:
        if self._tie is None:
            return None
        return self._tie(self._seq[self._index(position)])


class _List(Selection):
    def __init__(self, slots: list[int], tie: Callable[[int], Hashable] | None) -> None:
        self._slots = slots
        self._tie = tie
        self.total = len(slots)

    def at(self, position: int) -> int:
        return self._slots[position]

    def tie(self, position: int) -> Hashable | None:
        return None if self._tie is None else self._tie(self._slots[position])


class _Shuffled(Selection):
    """Equal-size chunks of the base order, permuted by p -> (a*p + b) mod m for this request."""

    def __init__(self, base: Selection, rng: random.Random) -> None:
        self._base = base
        self.total = base.total
        self._size = max(1, min(_CHUNK, base.total // 8))
        self._full, self._rest = divmod(base.total, self._size)
        self._chunks = self._full + (1 if self._rest else 0)
        m = max(1, self._chunks)
        self._a = 1
        if m > 1:
            self._a = rng.randrange(1, m)
            while math.gcd(self._a, m) != 1:
                self._a = rng.randrange(1, m)
        self._b = rng.randrange(m)
        # Where the one short chunk (the last of the base order) lands in the permuted order.
        self._short_at = ((self._full - self._b) * pow(self._a, -1, m)) % m if self._rest else m

    def at(self, position: int) -> int:
        size, short_at = self._size, self._short_at
        if position < short_at * size:
            k, offset = divmod(position, size)
        elif position < short_at * size + self._rest:
            k, offset = short_at, position - short_at * size
        else:
            k, offset = divmod(position - self._rest + size, size)
        chunk = (self._a * k + self._b) % max(1, self._chunks)
        return self._base.at(chunk * size + offset)

    def window(self, start: int, stop: int, rng: random.Random | None) -> list[int]:
        stop = min(stop, self.total)
        return [self.at(i) for i in range(start, stop)]


def select(
    catalog: Catalog,
    clauses: list[list[Predicate]],
    sort: list[SortKey],
    getters: Callable[[str], Getter],
    rng: random.Random,
) -> Selection:
    """The products matching every clause, ordered by `sort` (or in no stable order without one)."""
    driving = _driving(clauses, sort)
    residual = list(clauses)
    if driving == "entity_id" and sort and _names_one_second(clauses):
        # An id keyset inside one second (`updated_at eq` AND `entity_id gt`): the updated index
        # holds that second's products in id order, so read those instead of every later id.
        index = catalog.updated_index()
        lo, hi, residual = _time_range(index, residual, "updated_at")
        matches = _filter(index, lo, hi, slot_of_key, residual)
        if sort[0].descending:
            matches.reverse()
        return _List(matches, None)
    if driving == "entity_id":
        lo, hi, residual = _entity_range(catalog, residual)
        seq: Sequence[int] | Sequence[str] = catalog.alive
        decode: Callable[[Any], int] = _identity
        tie: Callable[[Any], Hashable] | None = None
    elif driving in _TIME_FIELDS:
        index = catalog.updated_index() if driving == "updated_at" else catalog.created_index()
        lo, hi, residual = _time_range(index, residual, driving)
        seq, decode = index, slot_of_key
        tie = ms_of_key
    elif driving == "sku":
        seq, lo, hi = catalog.sku_index(), 0, len(catalog)
        decode, tie = _slot_decoder(catalog), None
    else:
        seq, lo, hi, decode, tie = catalog.alive, 0, len(catalog), _identity, None

    descending = bool(sort) and sort[0].descending
    realized = driving is not None and _realized(driving, sort)
    if realized and sort and len(sort) > 1 and driving in _TIME_FIELDS:
        tie = None  # a time then entity_id in the same direction: the index order is total
    if not sort:
        tie = None
    if realized and not residual:
        base: Selection = _Range(seq, lo, hi, descending, decode, tie)
    else:
        matches = _filter(seq, lo, hi, decode, residual)
        if realized:
            if descending:
                matches.reverse()
            times = catalog.updated_ms if driving == "updated_at" else catalog.created_ms
            slot_tie = None if tie is None else times
            base = _List(matches, slot_tie)
        else:
            base = _sorted(matches, sort, getters)
    if not sort:
        return _Shuffled(base, rng)
    return base


def _identity(slot: Any) -> int:
    return int(slot)


def _slot_decoder(catalog: Catalog) -> Callable[[Any], int]:
    def decode(sku: Any) -> int:
        slot = catalog.slot_of(str(sku))
        return -1 if slot is None else slot

    return decode


def _driving(clauses: list[list[Predicate]], sort: list[SortKey]) -> str | None:
    if sort:
        first = sort[0].field
        return first if first in ("entity_id", "sku", *_TIME_FIELDS) else None
    bounded = any(
        len(c) == 1 and c[0].field == "updated_at" and c[0].op in _RANGE_OPS for c in clauses
    )
    return "updated_at" if bounded else "entity_id"


def _names_one_second(clauses: list[list[Predicate]]) -> bool:
    return any(len(c) == 1 and c[0].field == "updated_at" and c[0].op == "eq" for c in clauses)


def _realized(driving: str, sort: list[SortKey]) -> bool:
    """Whether walking the driving index (forwards or backwards) yields exactly the asked order."""
    if len(sort) <= 1 or driving in UNIQUE_FIELDS:
        return True
    second = sort[1]
    return (
        driving in _TIME_FIELDS
        and second.field == "entity_id"
        and second.descending == sort[0].descending
    )


def _take_bounds(
    clauses: list[list[Predicate]], field: str
) -> tuple[list[Predicate], list[list[Predicate]]]:
    bounds: list[Predicate] = []
    rest: list[list[Predicate]] = []
    for clause in clauses:
        if len(clause) == 1 and clause[0].field == field and clause[0].op in _RANGE_OPS:
            bounds.append(clause[0])
        else:
            rest.append(clause)
    return bounds, rest


def _entity_range(
    catalog: Catalog, clauses: list[list[Predicate]]
) -> tuple[int, int, list[list[Predicate]]]:
    bounds, rest = _take_bounds(clauses, "entity_id")
    low, high = 1, math.inf
    for p in bounds:
        value = float(p.value)
        if p.op in ("gt", "gteq", "eq"):
            low = max(low, math.floor(value) + 1 if p.op == "gt" else math.ceil(value))
        if p.op in ("lt", "lteq", "eq"):
            high = min(high, math.ceil(value) - 1 if p.op == "lt" else math.floor(value))
    alive = catalog.alive
    lo = bisect.bisect_left(alive, low - 1)
    hi = len(alive) if high == math.inf else bisect.bisect_right(alive, int(high) - 1)
    return lo, max(lo, hi), rest


def _time_range(
    index: list[int], clauses: list[list[Predicate]], field: str
) -> tuple[int, int, list[list[Predicate]]]:
    bounds, rest = _take_bounds(clauses, field)
    lo, hi = 0, len(index)
    for p in bounds:
        first, last = key_bounds(int(p.value))
        if p.op in ("gt",):
            lo = max(lo, bisect.bisect_right(index, last))
        elif p.op in ("gteq", "eq"):
            lo = max(lo, bisect.bisect_left(index, first))
        if p.op == "lt":
            hi = min(hi, bisect.bisect_left(index, first))
        elif p.op in ("lteq", "eq"):
            hi = min(hi, bisect.bisect_right(index, last))
    return lo, max(lo, hi), rest


def _filter(
    seq: Sequence[int] | Sequence[str],
    lo: int,
    hi: int,
    decode: Callable[[Any], int],
    clauses: list[list[Predicate]],
) -> list[int]:
    slots = [decode(seq[i]) for i in range(lo, hi)]
    for clause in clauses:
        if len(clause) == 1:
            test = clause[0].test
            slots = [s for s in slots if test(s)]
        else:
            tests = [p.test for p in clause]
            slots = [s for s in slots if any(t(s) for t in tests)]
    return slots


def _sorted(slots: list[int], sort: list[SortKey], getters: Callable[[str], Getter]) -> Selection:
    """Sort the matches on the full key (stable passes, last key first); ties stay detectable."""
    gets = [getters(key.field) for key in sort]
    for key, get in zip(reversed(sort), reversed(gets), strict=True):
        slots.sort(key=lambda s, g=get: _sortable(g(s)), reverse=key.descending)  # type: ignore[misc]
    if any(key.field in UNIQUE_FIELDS for key in sort):
        return _List(slots, None)
    return _List(slots, lambda s: tuple(_sortable(g(s)) for g in gets))


def _sortable(value: Any) -> tuple[int, Any]:
    # NULLs first, as MySQL and SQL Server sort them ascending.
    return (0, 0) if value is None else (1, value)

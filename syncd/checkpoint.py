"""Durable progress of a source, as stored in `source_state`: the incremental watermark and the
checkpoint of an unfinished full scan. Pure data + JSON, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from syncd.sources.base import Cursor


def encode_cursor(cursor: Cursor) -> str:
    """The watermark column's JSON."""
    return json.dumps(
        {
            "since": cursor.since.isoformat(),
            "offset": cursor.offset,
            "after_id": cursor.after_id,
            "exclusive": cursor.exclusive,
        }
    )


def decode_cursor(text: str | None) -> Cursor | None:
    """Inverse of `encode_cursor`; None for a missing or unreadable watermark."""
    if not text:
        return None
    try:
        data = json.loads(text)
        after_id = data.get("after_id")
        return Cursor(
            datetime.fromisoformat(data["since"]),
            int(data.get("offset", 0)),
            None if after_id is None else int(after_id),
            bool(data.get("exclusive", False)),
        )
    except (ValueError, KeyError, TypeError):
        return None


def to_ranges(numbers: Iterable[int]) -> list[list[int]]:
    """[1,2,3,7,8] -> [[1,3],[7,8]]: pages complete almost in order, so this stays tiny."""
    ordered = sorted(set(numbers))
    ranges: list[list[int]] = []
    # Encoded after every page: rather than step through every number, halve the slices until
    # each is a run (distinct sorted numbers are consecutive iff last - first == count - 1).
    todo = [(0, len(ordered) - 1)] if ordered else []
    while todo:
        lo, hi = todo.pop()
        first, last = ordered[lo], ordered[hi]
        if last - first == hi - lo:
            if ranges and first == ranges[-1][1] + 1:
                ranges[-1][1] = last
            else:
                ranges.append([first, last])
        else:
            mid = (lo + hi) // 2
            todo += ((mid + 1, hi), (lo, mid))  # the lower half next: ranges come out in order
    return ranges


def from_ranges(ranges: Iterable[Iterable[int]]) -> set[int]:
    """Inverse of `to_ranges`."""
    numbers: set[int] = set()
    for first, last in ranges:
        numbers.update(range(first, last + 1))
    return numbers


@dataclass(frozen=True, slots=True)
class FullScanCheckpoint:
    """An unfinished full scan: which pages are committed, and what the catalog looked like.

    `implicit`: the scan began with no live product, so every live product was written by it; its
    marks are that fact, not rows, until something needs them as rows (docs/SYNC.md).
    """

    scan_id: int
    started: datetime
    page_size: int
    total: int | None
    done: frozenset[int]
    mutated: bool = False
    implicit: bool = False

    def encode(self) -> str:
        """The checkpoint column's JSON."""
        # An implicit scan's id goes under another key: a syncd from before implicit marks,
        # resuming it, would take the products without marks for unseen ones and could tombstone
        # them. Finding no `scan_id`, it discards the checkpoint and scans afresh instead.
        key = "first_scan_id" if self.implicit else "scan_id"
        return json.dumps(
            {
                key: self.scan_id,
                "started": self.started.isoformat(),
                "page_size": self.page_size,
                "total": self.total,
                "done": to_ranges(self.done),
                "mutated": self.mutated,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str | None) -> FullScanCheckpoint | None:
        """Inverse of `encode`; None for a missing or unreadable checkpoint."""
        if not text:
            return None
        try:
            data = json.loads(text)
            implicit = "scan_id" not in data
            return cls(
                scan_id=int(data["first_scan_id" if implicit else "scan_id"]),
                started=datetime.fromisoformat(data["started"]),
                page_size=int(data["page_size"]),
                total=None if data["total"] is None else int(data["total"]),
                done=frozenset(from_ranges(data["done"])),
                mutated=bool(data.get("mutated", False)),
                implicit=implicit,
            )
        except (ValueError, KeyError, TypeError):
            return None

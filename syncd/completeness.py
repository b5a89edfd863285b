"""Whether a full scan saw the whole catalog: the screen each page passes before it is written, and
the doubts that keep a scan from concluding anything about deletions (docs/SYNC.md, "Deletions").

Pure data, no I/O: the engine feeds it pages and the store's view of their skus.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from syncd.store.base import ProductRecord, StoredProduct
from syncd.store.rows import stored_time

# Doubts kept for the log line and the run's row; the counts behind them are kept in full.
MAX_REASONS = 5
MAX_SKUS = 10
# Skus a first scan remembers (about 100 bytes each) before it reads every page's view from the
# store again: the memory stays bounded on any catalog, and either way the screen is exact.
FIRST_SCAN_SKUS = 250_000


@dataclass(frozen=True, slots=True)
class Screened:
    """One page after the screen: what may be written, and what must not be.

    `disputed` skus arrived with another id than the one stored (another product's payload under
    this sku) or with an older `updated_at` (a stale copy): they are not written and the scan stops
    counting them as seen, so its verification reads them again by sku. `repeated` skus were
    already committed by this scan, with the same id (a shifted page, a page served twice).
    """

    keep: list[ProductRecord]
    disputed: list[str]
    repeated: list[str]
    stored: int = 0
    """How many of the page's skus have a live stored row."""
    unchanged: list[str] = field(default_factory=list)
    """Skus stored live with the content that arrived (the same hash): nothing to write, only
    to count, and to mark as seen by a scan. Not in `keep`."""


def screen(records: Sequence[ProductRecord], stored: Mapping[str, StoredProduct]) -> Screened:
    """Sort a page's records into written, unchanged, disputed and repeated, against the stored
    rows.

    A tombstoned row is not compared: a product that comes back gets a new id on both platforms.
    """
    by_sku: dict[str, ProductRecord] = {}
    disputed: dict[str, None] = {}
    repeated: dict[str, None] = {}
    for record in records:
        earlier = by_sku.get(record.sku)
        if earlier is not None:
            if earlier.id != record.id:
                disputed[record.sku] = None
            else:
                repeated[record.sku] = None
        by_sku[record.sku] = record
    live = 0
    for sku, record in by_sku.items():
        row = stored.get(sku)
        live += row is not None and row.live
        if row is None or sku in disputed or not row.live:
            continue
        if row.id is not None and record.id is not None and row.id != record.id:
            disputed[sku] = None
        elif row.updated_at and record.updated_at and _older(record.updated_at, row.updated_at):
            disputed[sku] = None  # updated_at never goes back: a copy older than the stored one
        elif row.seen:
            repeated[sku] = None
    keep: list[ProductRecord] = []
    unchanged: list[str] = []
    for sku, record in by_sku.items():
        if sku in disputed:
            continue
        row = stored.get(sku)
        if row is not None and row.live and row.content_hash == record.content_hash:
            unchanged.append(sku)
        else:
            keep.append(record)
    repeated_kept = [sku for sku in repeated if sku not in disputed]
    return Screened(keep, list(disputed), repeated_kept, live, unchanged)


@dataclass(slots=True)
class FirstScan:
    """The skus written so far by a full scan of a source that had no live product when the scan
    began. Nobody else writes the source meanwhile (its run lock, or lease), so a page none of
    whose skus is here has no live stored row: it is screened without reading the store."""

    written: set[str] = field(default_factory=set)
    limit: int = FIRST_SCAN_SKUS
    full: bool = False

    def untouched(self, skus: Iterable[str]) -> bool:
        """Whether none of `skus` can have a live stored row (False once past the limit)."""
        return not self.full and self.written.isdisjoint(skus)

    def add(self, skus: Iterable[str]) -> None:
        """Remember `skus` as written (or about to be, in the commit window)."""
        if self.full:
            return
        self.written.update(skus)
        if len(self.written) > self.limit:
            self.full = True
            self.written = set()


@dataclass(slots=True)
class Doubts:
    """Why a full scan cannot prove that a product it did not see is gone (empty when it can)."""

    short_pages: list[str] = field(default_factory=list)
    repeated: int = 0
    disputed: int = 0
    disputed_skus: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def short(self, number: int, got: int, expected: int, size: int) -> None:
        """Page `number` of `expected` held `got` products, fewer than a page of `size`."""
        self.short_pages.append(f"page {number} of {expected} held {got} of {size} products")

    def screened(self, result: Screened) -> None:
        """Count a page's repeated and disputed skus."""
        self.repeated += len(result.repeated)
        self.disputed += len(result.disputed)
        room = MAX_SKUS - len(self.disputed_skus)
        self.disputed_skus.extend(result.disputed[: max(0, room)])

    def add(self, reason: str) -> None:
        """Any other doubt, in words."""
        self.other.append(reason)

    def __bool__(self) -> bool:
        return bool(self.short_pages or self.repeated or self.disputed or self.other)

    def reasons(self) -> list[str]:
        """The doubts in words, the first few of each kind."""
        out = list(self.short_pages[:MAX_REASONS])
        if len(self.short_pages) > MAX_REASONS:
            out.append(f"{len(self.short_pages) - MAX_REASONS} more short pages")
        if self.repeated:
            out.append(f"{self.repeated} skus arrived twice")
        if self.disputed:
            out.append(
                f"{self.disputed} skus arrived with another id or an older updated_at than "
                f"stored (not written: {', '.join(self.disputed_skus)})"
            )
        return out + self.other

    def summary(self) -> str:
        """One line for the run's row."""
        return "; ".join(self.reasons())


def _older(arriving: str, stored: str) -> bool:
    """Whether a platform's `updated_at` is before the stored one, compared in the stored form
    (Magento's naive `YYYY-MM-DD HH:MM:SS` against ISO-8601 with milliseconds and `Z`)."""
    return (stored_time(arriving) or arriving) < stored

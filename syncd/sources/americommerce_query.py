"""AmeriCommerce list requests as query parameters, its datetimes, and the incremental keyset cursor.

Everything here is documented API syntax (AmeriCommerce/rest-api, docs/common_usage.md and
docs/query_syntax.md): `page`, `count`, `sort` (comma-separated, `-` for descending), `fields`
(comma-separated), and `field=op:value` filters whose terms join with ` AND ` / ` OR ` (`+` in a URL);
different fields AND together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timezone

from syncd.sources.base import Cursor
from syncd.store import ProductRecord

LISTING_FIELDS = "id,item_number"
PROBE_FIELDS = "id,item_number,created_at"


def format_ac_time(moment: datetime) -> str:
    """A filter value: ISO-8601 in UTC with milliseconds and `Z` (no `+` to escape), e.g.
    `2025-06-01T12:00:00.250Z`; sub-millisecond digits are cut (the store keeps milliseconds)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_ac_time(text: str, naive_offset: timezone | None) -> datetime:
    """An AmeriCommerce datetime (`2014-03-19T13:31:47.92-05:00`, `...Z`) as aware UTC.

    A value without an offset is in the store's local time, which only configuration can tell
    (`naive_offset`); without it such a value is refused rather than guessed.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 datetime") from None
    if moment.tzinfo is None:
        if naive_offset is None:
            raise ValueError(
                f"{text!r} has no UTC offset; set naive_time_offset to the store's offset in minutes"
            )
        moment = moment.replace(tzinfo=naive_offset)
    return moment.astimezone(UTC)


def parse_stored_time(text: str | None) -> datetime | None:
    """Inverse of `format_ac_time` for a record's normalised `updated_at`; None if absent."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def full_params(page: int, count: int) -> dict[str, str]:
    """Offset page `page` in id order: unique, so no product can straddle two pages by a tie."""
    return {"page": str(page), "count": str(count), "sort": "id"}


def changed_params(cursor: Cursor, count: int) -> dict[str, str]:
    """Keyset page in (updated_at, id) order from `cursor`, always page 1 (see `next_cursor`)."""
    when = format_ac_time(cursor.since)
    params = {"page": "1", "count": str(count), "sort": "updated_at,id"}
    if cursor.after_id is not None:
        # Two fields AND together: this millisecond, ids after the last one read.
        params["updated_at"] = f"eq:{when}"
        params["id"] = f"gt:{cursor.after_id}"
    else:
        params["updated_at"] = f"{'gt' if cursor.exclusive else 'gte'}:{when}"
    return params


def listing_params(after_id: int, count: int) -> dict[str, str]:
    """Ids and item numbers only (`fields`), ids after `after_id` in id order: a keyset listing."""
    return {
        "page": "1",
        "count": str(count),
        "sort": "id",
        "id": f"gt:{after_id}",
        "fields": LISTING_FIELDS,
    }


def probe_params() -> dict[str, str]:
    """The newest product by `created_at` (descending), trimmed by `fields`, and `total_count`."""
    return {"page": "1", "count": "1", "sort": "-created_at", "fields": PROBE_FIELDS}


def any_of(field: str, values: Sequence[str]) -> dict[str, str]:
    """Products whose `field` equals one of `values` (`eq:a OR eq:b`), all on one page."""
    return {
        "page": "1",
        "count": str(max(1, len(values))),
        "sort": "id",
        field: " OR ".join(f"eq:{value}" for value in values),
    }


def filterable(value: str) -> bool:
    """Whether `value` survives the filter syntax: AND/OR between spaces would split it, and the
    store trims the value's ends."""
    words = {word.upper() for word in value.split()}
    return bool(value) and value == value.strip() and not words & {"AND", "OR"}


def batches(values: Sequence[str], most: int, budget: int = 1500) -> list[list[str]]:
    """`values` in lists of at most `most`, each short enough for one URL (IIS refuses query
    strings over 2048 bytes by default; `eq:` and ` OR ` cost 7 characters a value)."""
    out: list[list[str]] = []
    size = 0
    for value in values:
        cost = len(value) + 7
        if not out or len(out[-1]) >= most or size + cost > budget:
            out.append([])
            size = 0
        out[-1].append(value)
        size += cost
    return out


def next_cursor(cursor: Cursor, records: list[ProductRecord], more: bool) -> Cursor:
    """Where the keyset read continues after `records` (the page read at `cursor`; `more`: its
    answer's `total_count` says more products match than it held).

    Normally at the last product's millisecond, inclusive: the few products of that millisecond
    are read again and found unchanged by hash, which also covers later updates within it. When
    that millisecond fills more than half of a page with more to come (a mass update or an import
    stamps many products alike), the read switches to an id keyset inside it (`updated_at=eq:`
    and `id=gt:`), then goes on strictly after it. Offsets are never used, so no update can shift
    a product out of view.
    """
    if not records:
        return Cursor(cursor.since, exclusive=True) if cursor.after_id is not None else cursor
    last = records[-1]
    if cursor.after_id is not None:
        if more and last.id is not None:
            return Cursor(cursor.since, after_id=last.id)
        return Cursor(cursor.since, exclusive=True)
    last_time = parse_stored_time(last.updated_at)
    if last_time is None:
        return cursor
    tied = 0
    for record in reversed(records):
        if record.updated_at != last.updated_at:
            break
        tied += 1
    if more and last.id is not None and tied * 2 > len(records):
        return Cursor(last_time, after_id=last.id)
    return Cursor(last_time)

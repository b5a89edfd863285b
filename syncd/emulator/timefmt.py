"""Datetimes as each platform writes and reads them; the catalog keeps epoch milliseconds (UTC)."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAGENTO_INPUT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


def magento_format(ms: int) -> str:
    """Magento's DATETIME rendering: 'YYYY-MM-DD HH:MM:SS', UTC, whole seconds."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms // 1000))


def magento_parse(text: str) -> int | None:
    """Epoch ms of a filter value MySQL would read as a DATETIME; None if it would not."""
    match = _MAGENTO_INPUT.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_zone(zone),
        )
    except ValueError:
        return None
    return to_ms(moment)


def _zone(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def store_format(ms: int, offset_minutes: int) -> str:
    """AmeriCommerce's rendering: local time with offset, .NET 'FFF' milliseconds (trailing zeros cut)."""
    local = from_ms(ms).astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    millis = ms % 1000
    if millis:
        text += "." + f"{millis:03d}".rstrip("0")
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def store_parse(text: str, offset_minutes: int) -> int | None:
    """Epoch ms of an ISO-8601 query value; a value without offset is the store's local time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    return to_ms(moment)


_TWO_DIGITS = tuple(f"{i:02d}" for i in range(60))
_MILLIS = tuple("." + f"{i:03d}".rstrip("0") if i else "" for i in range(1000))


class MagentoFormatter:
    """`magento_format`, table-driven for the hot path: one date string per day, cached."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def format(self, ms: int) -> str:
        """'YYYY-MM-DD HH:MM:SS' of epoch ms (UTC)."""
        day, second = divmod(ms // 1000, 86_400)
        date = self._days.get(day)
        if date is None:
            date = magento_format(day * 86_400_000)[:10]
            self._days[day] = date
        hour, rest = divmod(second, 3600)
        minute, sec = divmod(rest, 60)
        return f"{date} {_TWO_DIGITS[hour]}:{_TWO_DIGITS[minute]}:{_TWO_DIGITS[sec]}"


class StoreFormatter:
    """`store_format` for one store offset, table-driven for the hot path."""

    def __init__(self, offset_minutes: int) -> None:
        self._offset_ms = offset_minutes * 60_000
        sign = "-" if offset_minutes < 0 else "+"
        hours, minutes = divmod(abs(offset_minutes), 60)
        self._suffix = f"{sign}{hours:02d}:{minutes:02d}"
        self._days: dict[int, str] = {}

    def format(self, ms: int) -> str:
        """Local ISO-8601 with trimmed milliseconds and the store's offset."""
        day, rest = divmod(ms + self._offset_ms, 86_400_000)
        date = self._days.get(day)
        if date is None:
            date = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
            self._days[day] = date
        second, millis = divmod(rest, 1000)
        hour, rest_s = divmod(second, 3600)
        minute, sec = divmod(rest_s, 60)
        return (
            f"{date}T{_TWO_DIGITS[hour]}:{_TWO_DIGITS[minute]}:{_TWO_DIGITS[sec]}"
            f"{_MILLIS[millis]}{self._suffix}"
        )


def retry_after(seconds: float, now: datetime, style: str) -> str:
    """A `Retry-After` value: whole seconds (at least 1) or the HTTP-date by which to come back."""
    if style == "http-date":
        when = now + timedelta(seconds=max(1.0, seconds))
        if when.microsecond:
            when = when.replace(microsecond=0) + timedelta(seconds=1)
        return format_datetime(when.astimezone(UTC), usegmt=True)
    return str(max(1, math.ceil(seconds - 1e-9)))

"""`syncd runs` and `syncd events`: the run and token-event history in the database, filtered, as
a table for people or JSON for scripts."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from syncd.clock import Clock, SystemClock
from syncd.config import Settings
from syncd.store import RunRecord, TokenEvent
from syncd.store.base import TOKEN_EVENT_KINDS
from syncd.store.factory import open_store
from syncd.store.rows import iso

EXIT_USAGE = 2
_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SQLITE_MAX = 2**63 - 1


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `6h`, `2d`, `1w` ago, or an ISO-8601 date/time (UTC unless it says otherwise)."""
    match = _AGE.match(text)
    if match:
        try:
            return now - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        except OverflowError:
            raise ValueError("expected an age that ends after the year 1") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            "expected an ISO-8601 date or time (2026-01-31, 2026-01-31T12:00:00Z) "
            "or an age such as 30m, 6h, 2d, 1w"
        ) from None
    # The store compares ISO text in UTC: an offset must be folded in, not carried along.
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_event_kinds(values: Sequence[str] | None) -> list[str] | None:
    """The kinds given as repeated and/or comma-separated `--event` values; None if none given."""
    if not values:
        return None
    kinds = [kind.strip() for value in values for kind in value.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in TOKEN_EVENT_KINDS]
    if unknown or not kinds:
        shown = ",".join(values)
        raise ValueError(
            f"--event: {unknown[0] if unknown else shown!r} is invalid: expected one or more of "
            f"{', '.join(TOKEN_EVENT_KINDS)} (repeat --event or separate with commas)"
        )
    return list(dict.fromkeys(kinds))


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None
) -> str:
    """Left-aligned columns; with `width`, the last column is cut to fit a terminal line."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
        line = "  ".join([*cells, row[-1]])
        if width is not None and len(line) > width:
            line = line[: max(width - 1, 0)] + "…"
        lines.append(line.rstrip())
    return "\n".join(lines)


def run_json(run: RunRecord) -> dict[str, Any]:
    """One run as a flat JSON object (the `sync_runs` columns)."""
    return {
        "id": run.id,
        "source": run.source,
        "kind": run.kind,
        "status": run.status,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": _duration(run),
        **asdict(run.totals),
        "error": run.error,
    }


def event_json(event: TokenEvent) -> dict[str, Any]:
    """One token event as a JSON object (fingerprints only: no token ever reaches the table)."""
    return {
        "source": event.source,
        "at": iso(event.at),
        "event": event.event,
        "expires_at": iso(event.expires_at),
        "fingerprint": event.fingerprint,
        "detail": event.detail,
        "owner": event.owner,
    }


async def show_runs(
    args: argparse.Namespace, settings: Settings, clock: Clock | None = None
) -> int:
    """`syncd runs [SOURCE] [--since] [--status] [--limit] [--json]`: newest first."""
    try:
        since, limit = _filters(args, clock or SystemClock())
    except ValueError as exc:
        print(f"syncd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    async with open_store(settings.store) as store:
        runs = await store.runs(args.source, args.status, since, limit)
    if args.json:
        print(json.dumps({"runs": [run_json(r) for r in runs]}, indent=2))
        return 0
    if not runs:
        print(_nothing("runs", args, settings))
        return 0
    headers = ["ID", "SOURCE", "KIND", "STATUS", "STARTED", "DURATION", "SEEN", "NEW", "CHANGED"]
    headers += ["DELETED", "REQUESTS", "RETRIES", "429", "ERROR"]
    rows = [_run_row(r) for r in runs]
    print(render_table(headers, rows, _width(sys.stdout)))
    return 0


async def show_events(
    args: argparse.Namespace, settings: Settings, clock: Clock | None = None
) -> int:
    """`syncd events [SOURCE] [--since] [--event KIND] [--limit] [--json]`: token events, newest first."""
    try:
        since, limit = _filters(args, clock or SystemClock())
        kinds = parse_event_kinds(args.event)
    except ValueError as exc:
        print(f"syncd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    async with open_store(settings.store) as store:
        events = await store.token_events(args.source, since, limit, event=kinds)
    if args.json:
        print(json.dumps({"events": [event_json(e) for e in events]}, indent=2))
        return 0
    if not events:
        print(_nothing("token events", args, settings))
        return 0
    headers = ["AT", "SOURCE", "EVENT", "EXPIRES", "FINGERPRINT", "OWNER", "DETAIL"]
    rows = [_event_row(e) for e in events]
    print(render_table(headers, rows, _width(sys.stdout)))
    return 0


def _run_row(r: RunRecord) -> list[str]:
    t = r.totals
    counts = (t.items_seen, t.items_created, t.items_updated, t.items_deleted, t.requests)
    head = [str(r.id), r.source, r.kind, r.status, r.started_at, _seconds(_duration(r))]
    return [*head, *map(str, counts), str(t.retries), str(t.rate_limited), r.error or ""]


def _event_row(e: TokenEvent) -> list[str]:
    expires = iso(e.expires_at) or "-"
    fp, owner = e.fingerprint or "-", e.owner or "-"
    return [iso(e.at) or "", e.source, e.event, expires, fp, owner, e.detail or ""]


def _filters(args: argparse.Namespace, clock: Clock) -> tuple[datetime | None, int]:
    """The parsed --since (None if absent) and --limit; ValueError naming the option if one is bad."""
    if args.limit < 1:
        raise ValueError(f"--limit: {args.limit} is invalid: expected 1 or more")
    # SQLite integers are 64-bit; a larger limit means the same thing: everything.
    limit = min(args.limit, _SQLITE_MAX)
    if args.since is None:
        return None, limit
    try:
        return parse_since(args.since, clock.now()), limit
    except ValueError as exc:
        raise ValueError(f"--since: {args.since!r} is invalid: {exc}") from None


def _nothing(what: str, args: argparse.Namespace, settings: Settings) -> str:
    known = [s.name for s in settings.sources]
    if args.source is not None and args.source not in known:
        return f"no {what} for {args.source!r} (configured sources: {', '.join(known) or 'none'})"
    return f"no {what} match"


def _duration(run: RunRecord) -> float | None:
    if run.finished_at is None:
        return None
    started = datetime.fromisoformat(run.started_at.replace("Z", "+00:00"))
    finished = datetime.fromisoformat(run.finished_at.replace("Z", "+00:00"))
    return (finished - started).total_seconds()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _width(stream: TextIO) -> int | None:
    return shutil.get_terminal_size().columns if stream.isatty() else None

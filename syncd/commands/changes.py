"""`syncd changes` and `syncd export`: read the change feed, and the live catalog a consumer
loads first (docs/CHANGES.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, TextIO

import orjson

from syncd.config import Settings
from syncd.feed.webhooks import entry_json
from syncd.store.base import ChangeEntry
from syncd.store.factory import AnyStore, open_store
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_changes import ChangeListener

READ_BATCH = 500
"""Entries read from the store at a time."""

EXPORT_COLUMNS = (
    "sku", "id", "name", "price", "status", "type_id", "updated_at", "content_hash", "payload",
)  # fmt: skip


def _store(settings: Settings) -> contextlib.AbstractAsyncContextManager[AnyStore]:
    return open_store(settings.store, changes=settings.changes)


@contextlib.asynccontextmanager
async def _listener(store: AnyStore, follow: bool) -> AsyncIterator[ChangeListener | None]:
    """On PostgreSQL, `--follow` is woken by LISTEN/NOTIFY (and still polls every --interval,
    should a notice be missed); SQLite has no notices: it polls."""
    if not follow or not isinstance(store, PostgresStore):
        yield None
        return
    async with store.listener() as listener:
        yield listener


async def _pause(stop: asyncio.Event, listener: ChangeListener | None, seconds: float) -> None:
    """Until new entries may be there: a notice, `seconds` passed, or `stop`."""
    stopped = asyncio.ensure_future(stop.wait())
    waits: set[asyncio.Future[Any]] = {stopped}
    if listener is not None:
        waits.add(asyncio.ensure_future(listener.wait(seconds)))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


def _line(entry: ChangeEntry, as_json: bool) -> str:
    if as_json:
        return orjson.dumps(entry_json(entry)).decode()
    run = "-" if entry.run_id is None else str(entry.run_id)
    return f"{entry.source}  {entry.seq}  {entry.op:<8}  {entry.sku}  run {run}  {entry.at}"


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM end `--follow` cleanly (exit 0) instead of a traceback."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def show_changes(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd changes [SOURCE] --since SEQ [--follow] [--limit N] [--json]`."""
    out: TextIO = sys.stdout
    remaining: int | None = args.limit
    stop = asyncio.Event()
    async with _store(settings) as store, _listener(store, args.follow) as listener:
        heads = await store.feed_heads()
        if args.source is not None and args.source not in heads:
            settings.source(args.source)  # ConfigError naming the known ones if it is unknown
        cursors: dict[str, int] = {}
        with _stop_on_signals(stop) if args.follow else contextlib.nullcontext():
            while not stop.is_set():
                names = [args.source] if args.source else sorted(await store.feed_heads())
                for name in names:
                    cursor = cursors.get(name, args.since)
                    while remaining is None or remaining > 0:
                        size = READ_BATCH if remaining is None else min(READ_BATCH, remaining)
                        batch = await store.changes(name, cursor, size)
                        if not batch:
                            break
                        out.write("".join(_line(e, args.json) + "\n" for e in batch))
                        out.flush()
                        cursor = batch[-1].seq
                        if remaining is not None:
                            remaining -= len(batch)
                    cursors[name] = cursor
                if not args.follow or remaining == 0:
                    break
                await _pause(stop, listener, args.interval)
    return 0


async def export_catalog(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd export SOURCE --format jsonl|csv`: the live products on stdout, streamed, and on
    stderr the feed seq they correspond to."""
    out: TextIO = sys.stdout
    count = 0
    async with _store(settings) as store:
        if args.source not in await store.feed_heads():
            settings.source(args.source)
        async with store.snapshot(args.source) as snap:
            writer = csv.writer(out) if args.format == "csv" else None
            if writer is not None:
                writer.writerow(EXPORT_COLUMNS)
            async for p in snap.products():
                if writer is not None:
                    writer.writerow(
                        (p.sku, p.id, p.name, p.price, p.status, p.type_id, p.updated_at,
                         p.content_hash, p.payload)
                    )  # fmt: skip
                else:
                    line = {
                        "source": args.source,
                        "sku": p.sku,
                        "content_hash": p.content_hash,
                        "payload": orjson.Fragment(p.payload),
                    }
                    out.write(orjson.dumps(line).decode() + "\n")
                count += 1
            seq = snap.seq
    out.flush()
    print(
        f"exported {count} products of {args.source!r} as of change-feed seq {seq}; "
        f"continue with 'syncd changes {args.source} --since {seq}'",
        file=sys.stderr,
    )
    return 0

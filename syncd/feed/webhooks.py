"""Webhook delivery: each `[[webhooks]]` entry POSTs batches of feed entries from its own cursor.

One task per webhook, apart from the sync runs: a run only `wake()`s it, so a slow or dead
receiver builds a backlog and never slows a sync. A batch is one source's next `batch_size`
entries; the cursor (`webhook_cursors`) moves only after a 2xx, so each entry arrives at least
once and in seq order per source. Only one batch per webhook is in memory at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import orjson

from syncd.clock import Clock
from syncd.config.feed import WebhookSettings
from syncd.errors import ChangesExpiredError, StoreError, SyncdError
from syncd.feed.signing import HEADER, sign
from syncd.logging import get_logger
from syncd.store.base import ChangeEntry, ChangeFeed

log = get_logger(__name__)

USER_AGENT = "syncd-webhooks"


class DeliveryError(SyncdError):
    """A receiver did not take a batch (no 2xx answer); the batch will be sent again."""


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """The delay before retry number `attempt` (0 first): uniform in [0, min(cap, base * 2^n)]
    ("full jitter": receivers that failed together do not retry together)."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(attempt, 62)))


def encode_batch(webhook: str, source: str, after: int, entries: Sequence[ChangeEntry]) -> bytes:
    """The JSON body of one delivery; payloads are embedded as stored, never re-parsed."""
    return orjson.dumps(
        {
            "webhook": webhook,
            "source": source,
            "after": after,
            "entries": [entry_json(e) for e in entries],
        }
    )


def entry_json(e: ChangeEntry) -> dict[str, Any]:
    """One entry as the feed's JSON object (also what `syncd changes --json` prints)."""
    return {
        "source": e.source,
        "seq": e.seq,
        "sku": e.sku,
        "op": e.op,
        "run_id": e.run_id,
        "at": e.at,
        "content_hash": e.content_hash,
        "payload": None if e.payload is None else orjson.Fragment(e.payload),
    }


async def webhook_backlog(
    store: ChangeFeed, hooks: Sequence[WebhookSettings]
) -> dict[tuple[str, str], int]:
    """(webhook, source) -> entries retained but not delivered yet."""
    heads = await store.feed_heads()
    backlog: dict[tuple[str, str], int] = {}
    for hook in hooks:
        cursors = await store.webhook_cursors(hook.name)
        for source in hook.sources or tuple(heads):
            head = heads.get(source)
            if head is None:
                backlog[(hook.name, source)] = 0
                continue
            cursor = max(cursors.get(source, head.pruned_through), head.pruned_through)
            backlog[(hook.name, source)] = head.last_seq - cursor
    return backlog


class WebhookSender:
    """Delivers one webhook's pending entries, batch by batch, from its persisted cursors."""

    def __init__(
        self,
        settings: WebhookSettings,
        store: ChangeFeed,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self._store = store
        self._session = session
        self._clock = clock
        # Never the full URL: its path or query may carry a token.
        self.host = urlsplit(settings.url).hostname or "?"
        self.delivered = 0
        """Entries delivered since this sender was made."""

    async def deliver_pending(self) -> int:
        """Send every pending batch, source by source; return how many entries were delivered.
        DeliveryError at the first batch the receiver does not take (its cursor stays put)."""
        name = self.settings.name
        heads = await self._store.feed_heads()
        cursors = await self._store.webhook_cursors(name)
        delivered = 0
        for source in self.settings.sources or tuple(heads):
            head = heads.get(source)
            if head is None:
                continue
            # A new webhook starts at the oldest entry still retained.
            cursor = cursors.get(source, head.pruned_through)
            while True:
                try:
                    entries = await self._store.changes(source, cursor, self.settings.batch_size)
                except ChangesExpiredError:
                    cursor = await self._skip_pruned(source, cursor)
                    continue
                if not entries:
                    break
                await self._post(source, cursor, entries)
                cursor = entries[-1].seq
                await self._store.set_webhook_cursor(name, source, cursor, self._clock.now())
                delivered += len(entries)
                self.delivered += len(entries)
                log.info(
                    "webhook.delivered",
                    webhook=name,
                    host=self.host,
                    source=source,
                    first_seq=entries[0].seq,
                    last_seq=cursor,
                    entries=len(entries),
                )
        return delivered

    async def _skip_pruned(self, source: str, cursor: int) -> int:
        """The receiver was down longer than retention: go on from the oldest retained entry,
        loudly. The body's `after` then tells the receiver where its gap is."""
        head = (await self._store.feed_heads())[source]
        log.error(
            "webhook.gap",
            webhook=self.settings.name,
            source=source,
            cursor=cursor,
            resumed_after=head.pruned_through,
            action=f"resync the receiver from 'syncd export {source}'",
        )
        await self._store.set_webhook_cursor(
            self.settings.name, source, head.pruned_through, self._clock.now()
        )
        return head.pruned_through

    async def _post(self, source: str, after: int, entries: Sequence[ChangeEntry]) -> None:
        body = encode_batch(self.settings.name, source, after, entries)
        stamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            HEADER: sign(self.settings.secret.get_secret_value(), stamp, body),
            "Syncd-Webhook": self.settings.name,
            # Stable across retries: a receiver can drop a batch it already applied.
            "Syncd-Delivery": f"{source}:{entries[0].seq}-{entries[-1].seq}",
        }
        try:
            async with asyncio.timeout(self.settings.timeout):
                async with self._session.post(
                    self.settings.url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    status = response.status
        except TimeoutError:
            raise DeliveryError(f"no answer within {self.settings.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= status < 300:
            # A 3xx too: following a redirect would send the signed feed somewhere unconfigured.
            moved = " (redirects are not followed)" if 300 <= status < 400 else ""
            raise DeliveryError(f"HTTP {status}{moved}")


class WebhookDispatcher:
    """Runs one delivery task per webhook; use as `async with WebhookDispatcher(...)`.

    Each task delivers what is pending when woken (after a run), every `retry_interval`, and
    after a failure with exponential backoff and full jitter (slept on the injected clock).
    """

    def __init__(
        self,
        hooks: Sequence[WebhookSettings],
        store: ChangeFeed,
        clock: Clock,
        rng: random.Random | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._hooks = tuple(hooks)
        self._store = store
        self._clock = clock
        self._rng = rng or random.Random()
        self._session = session
        self._own_session = session is None
        self._wake = {hook.name: asyncio.Event() for hook in self._hooks}
        self._tasks: list[asyncio.Task[None]] = []
        self.failures: dict[str, int] = dict.fromkeys(self._wake, 0)
        """Failed deliveries in a row, per webhook (0 once one succeeds)."""

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for hook in self._hooks:
            sender = WebhookSender(hook, self._store, self._session, self._clock)
            self._tasks.append(asyncio.create_task(self._run(sender), name=f"webhook-{hook.name}"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # An interrupted batch is simply sent again by the next process: at least once.
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._own_session and self._session is not None:
            await self._session.close()

    def wake(self) -> None:
        """Deliver now what is pending (called after each run); never waits."""
        for event in self._wake.values():
            event.set()

    async def _run(self, sender: WebhookSender) -> None:
        hook = sender.settings
        wake = self._wake[hook.name]
        while True:
            wake.clear()
            before = sender.delivered
            try:
                await sender.deliver_pending()
            except Exception as exc:
                if not isinstance(exc, DeliveryError | StoreError):
                    # A bug must not end this task for good: the backlog would grow unseen.
                    log.error(
                        "webhook.internal_error",
                        webhook=hook.name,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                # A batch taken since the last failure shows the receiver is back: start over.
                attempt = 0 if sender.delivered > before else self.failures[hook.name]
                self.failures[hook.name] = attempt + 1
                delay = full_jitter(attempt, hook.backoff_base, hook.backoff_cap, self._rng)
                log.warning(
                    "webhook.failed",
                    webhook=hook.name,
                    host=sender.host,
                    error=str(exc),
                    failures=attempt + 1,
                    retry_in_s=round(delay, 3),
                )
                await self._clock.sleep(delay)
                continue
            self.failures[hook.name] = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(hook.retry_interval):
                    await wake.wait()

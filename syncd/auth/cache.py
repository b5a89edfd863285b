"""The token cache shared by every request of every source: single-flight, refresh-ahead, persisted.

A renewed token is saved before anyone sends it. If that write fails (e.g. `database is locked`
while `syncd auth` or a CLI sync holds the database), the token stays in memory as *unsaved*: it
is not handed out, no further renewal is started (its refresh token may be the only live one),
and every later `get` saves it first. See `AmeriCommerceTokenProvider.obtain` for what a crash
at each moment of a rotation costs.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Self

from syncd.auth.provider import TokenProvider
from syncd.auth.token import AccessToken, fingerprint
from syncd.clock import Clock
from syncd.errors import StoreError, SyncdError
from syncd.logging import get_logger
from syncd.redaction import Redactor
from syncd.store import Store, TokenEvent, TokenRecord
from syncd.store.base import TokenEventKind

log = get_logger(__name__)


@dataclass(slots=True)
class _Unsaved:
    """A renewed token not written yet: the newest credential, known to this process only."""

    token: AccessToken
    source: str
    renewed: bool  # a refresh of an earlier token, not the first one
    failed_writes: int = 0


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: AccessToken | None = None
    unsaved: _Unsaved | None = None
    loaded: bool = False
    renewal: asyncio.Task[AccessToken] | None = None
    renewing_for: str = ""  # the source whose caller started `renewal`
    # Token requests and saves of an unsaved token begun; a caller that waited on the lock while
    # this moved shares `failure` instead of trying again itself.
    rounds: int = 0
    failure: SyncdError | None = None


def _ready(entry: _Entry, now: datetime, margin: float) -> AccessToken | None:
    """The entry's token if it may be handed out as it is: saved, and fresh."""
    token = entry.token
    if entry.unsaved is None and token is not None and token.is_fresh(now, margin):
        return token
    return None


def _retrieve(task: asyncio.Task[AccessToken]) -> None:
    # A renewal whose caller was cancelled still ends; its error is already logged as an event.
    if not task.cancelled():
        task.exception()


class TokenCache:
    """Hands out valid tokens per credential; at most one token request is in flight per credential.

    `save_attempts` writes (`save_retry_delay` seconds apart) are tried to save a renewed token
    before its caller is told the database failed; every later `get` tries as many again. On exit
    the cache waits up to `exit_wait` seconds for renewals still on the wire (their callers may
    have been cancelled by a shutdown), then saves what it holds unsaved.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        save_attempts: int = 3,
        save_retry_delay: float = 1.0,
        exit_wait: float = 5.0,
        redactor: Redactor | None = None,
    ) -> None:
        if save_attempts < 1 or save_retry_delay < 0 or exit_wait < 0:
            raise ValueError(
                "TokenCache needs save_attempts >= 1, save_retry_delay >= 0 and exit_wait >= 0"
            )
        self._store = store
        self._clock = clock
        self._save_attempts = save_attempts
        self._save_retry_delay = save_retry_delay
        self._exit_wait = exit_wait
        self._entries: dict[str, _Entry] = {}
        self._redactor = redactor or Redactor()

    @property
    def redactor(self) -> Redactor:
        """Where every token that passes through the cache (obtained, loaded, installed) is
        registered; the providers sharing the cache register what they sign and receive there."""
        return self._redactor

    def _known(self, token: AccessToken) -> AccessToken:
        self._redactor.register(token.value, token.refresh_token)
        return token

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Let renewals in flight end, then one last write of each token whose save failed; the
        store must still be open."""
        pending = {
            entry.renewal: entry
            for entry in self._entries.values()
            if entry.renewal is not None and not entry.renewal.done()
        }
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._exit_wait)
            for task in late:
                task.cancel()
                log.error(
                    "token.lost",
                    source=pending[task].renewing_for,
                    fingerprint=None,
                    consequence="the process stops while a token request is unanswered: if the "
                    "store rotates single-use refresh tokens, the next refresh may be refused and "
                    "the source then needs 'syncd auth'",
                )
            await asyncio.gather(*late, return_exceptions=True)
        for key, entry in list(self._entries.items()):
            async with entry.lock:
                unsaved = entry.unsaved
                if unsaved is None:
                    continue
                with contextlib.suppress(StoreError):
                    await self._save_unsaved(key, entry, unsaved, attempts=1)
                if entry.unsaved is not None:
                    log.error(
                        "token.lost",
                        source=unsaved.source,
                        fingerprint=unsaved.token.fingerprint,
                        consequence="the process stops without having saved its newest token: "
                        "if the store made the previous refresh token single-use, the next "
                        "refresh is refused and the source needs 'syncd auth'",
                    )

    def _entry(self, provider: TokenProvider) -> _Entry:
        return self._entries.setdefault(provider.cache_key, _Entry())

    async def get(self, provider: TokenProvider, source: str) -> AccessToken:
        """A token fresh enough to send now, obtaining one if needed (once, however many callers)."""
        entry = self._entry(provider)
        ready = _ready(entry, self._clock.now(), provider.refresh_margin)
        if ready is not None:
            return ready
        rounds_before = entry.rounds
        async with entry.lock:
            # Double-checked: whoever held the lock before us may have refreshed already.
            now = self._clock.now()
            ready = _ready(entry, now, provider.refresh_margin)
            if ready is not None:
                return ready
            token = entry.token
            if entry.rounds != rounds_before and entry.failure is not None:
                # The request we waited for failed: share its answer instead of asking again.
                raise entry.failure
            if entry.renewal is not None and not entry.renewal.done():
                # Its caller was cancelled, but it runs on (it may be saving a rotated token):
                # its answer is ours too, and a second save or request beside it would be wrong.
                return await asyncio.shield(entry.renewal)
            if entry.unsaved is not None:
                # Saved before anything else: its refresh token may be the only live one.
                token = await self._save_unsaved(provider.cache_key, entry, entry.unsaved)
                if token.is_fresh(now, provider.refresh_margin):
                    return token
            # Another process (`syncd auth`, a CLI sync beside the daemon) may have stored a newer
            # grant since: start from the persisted one, whose refresh token is the latest.
            entry.loaded = True
            stored = await self._load(provider)
            if stored is not None and (token is None or stored.value != token.value):
                if stored.is_fresh(now, provider.refresh_margin):
                    entry.token = stored
                    await self._event(source, "reused", stored, "persisted token still valid")
                    return stored
                token = stored
            renewal = entry.renewal
            if renewal is None or renewal.done():
                renewal = asyncio.create_task(self._renew(provider, entry, token, source))
                renewal.add_done_callback(_retrieve)
                entry.renewal = renewal
                entry.renewing_for = source
            # Shielded: once a refresh is on the wire its answer may hold the only copy of a rotated
            # refresh token; a cancelled caller must not drop it before it is persisted.
            return await asyncio.shield(renewal)

    async def _renew(
        self, provider: TokenProvider, entry: _Entry, previous: AccessToken | None, source: str
    ) -> AccessToken:
        entry.rounds += 1
        try:
            new = self._known(await provider.obtain(previous))
        except SyncdError as exc:
            entry.failure = exc
            await self._event(source, "failed", None, str(exc), level="error")
            raise
        entry.failure = None
        # Kept before the first write, so that no failure from here on can lose it.
        entry.unsaved = _Unsaved(new, source, renewed=previous is not None)
        return await self._save_unsaved(provider.cache_key, entry, entry.unsaved)

    async def _save_unsaved(
        self, key: str, entry: _Entry, unsaved: _Unsaved, *, attempts: int | None = None
    ) -> AccessToken:
        """Write `unsaved` (bounded retries); then it is the current token. StoreError if not."""
        entry.rounds += 1
        token, source = unsaved.token, unsaved.source
        attempts = attempts or self._save_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._persist(key, token)
            except StoreError as exc:
                unsaved.failed_writes += 1
                log.error(
                    "token.persist_failed",
                    source=source,
                    fingerprint=token.fingerprint,
                    refresh_fingerprint=fingerprint(token.refresh_token)
                    if token.refresh_token
                    else None,
                    attempt=attempt,
                    attempts=attempts,
                    error=str(exc),
                    consequence="the token is kept in memory, unused, and saved before its first use",
                )
                if attempt == attempts:
                    failure = StoreError(
                        f"the new token of source {source!r} could not be saved ({exc}); it is "
                        "kept in memory and saved before it is used: check the database"
                    )
                    entry.failure = failure
                    raise failure from exc
                await self._clock.sleep(self._save_retry_delay)
            else:
                break
        entry.unsaved = None
        entry.failure = None
        entry.token = token
        failed = unsaved.failed_writes
        detail = f"saved after {failed} failed write(s)" if failed else None
        await self._event(source, "refreshed" if unsaved.renewed else "issued", token, detail)
        return token

    async def invalidate(self, provider: TokenProvider, rejected: AccessToken, source: str) -> bool:
        """Drop `rejected` if it is still the current token (so N concurrent 401s refresh once)."""
        entry = self._entry(provider)
        async with entry.lock:
            current = entry.token
            if entry.unsaved is not None:
                return False  # a newer token exists already; `get` saves it before use
            if current is None or current.value != rejected.value or current.revoked:
                return False
            entry.token = replace(current, revoked=True)
            # Persist the revocation so a restart does not resurrect a token the server refused;
            # the refresh token is kept for flows that can trade it in.
            await self._persist(provider.cache_key, replace(current, expires_at=self._clock.now()))
            await self._event(source, "invalidated", current, "rejected with HTTP 401")
            return True

    async def install(self, provider: TokenProvider, token: AccessToken, source: str) -> None:
        """Store a token obtained outside the cache (e.g. by `syncd auth`) as the current one."""
        entry = self._entry(provider)
        self._known(token)
        async with entry.lock:
            await self._persist(provider.cache_key, token)
            entry.token = token
            entry.unsaved = None  # the operator's grant supersedes one this process could not save
            entry.loaded = True
            await self._event(source, "issued", token, "installed by an operator")

    async def current(self, provider: TokenProvider) -> AccessToken | None:
        """The cached (or persisted) token for `provider`, fresh or not, without obtaining one."""
        entry = self._entry(provider)
        if entry.unsaved is not None:
            return entry.unsaved.token
        if entry.token is None and not entry.loaded:
            return await self._load(provider)
        return entry.token

    async def _load(self, provider: TokenProvider) -> AccessToken | None:
        record = await self._store.load_token(provider.cache_key)
        if record is None:
            return None
        return self._known(
            AccessToken(
                value=record.access_token,
                expires_at=record.expires_at,
                obtained_at=record.issued_at or self._clock.now(),
                refresh_token=record.refresh_token,
            )
        )

    async def _persist(self, key: str, token: AccessToken) -> None:
        record = TokenRecord(token.value, token.expires_at, token.refresh_token, token.obtained_at)
        # Shielded: a cancelled run must not lose a rotated refresh token half-way.
        await asyncio.shield(self._store.save_token(key, record, self._clock.now()))

    async def _event(
        self,
        source: str,
        event: TokenEventKind,
        token: AccessToken | None,
        detail: str | None,
        *,
        level: str = "info",
    ) -> None:
        fp = token.fingerprint if token else None
        expires = token.expires_at if token else None
        getattr(log, level)(
            f"token.{event}",
            source=source,
            fingerprint=fp,
            expires_at=expires.isoformat() if expires else None,
            detail=detail,
        )
        await self._store.add_token_event(
            TokenEvent(source, self._clock.now(), event, expires, fp, detail)
        )

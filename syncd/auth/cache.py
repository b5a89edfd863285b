"""The token cache shared by every request of every source: single-flight, refresh-ahead, persisted.

Each credential's entry is in one of three states: `Idle` (a saved token, or none), `Renewing` (a
token request on the wire, or a wait for another replica's), `Unsaved` (a renewed token whose
write has not succeeded yet).

A renewed token is saved before anyone sends it. If that write fails (e.g. `database is locked`
while `syncd auth` or a CLI sync holds the database), the token stays in memory as *unsaved*: it
is not handed out, no further renewal is started (its refresh token may be the only live one),
and every later `get` saves it first. See `AmeriCommerceTokenProvider.obtain` for what a crash
at each moment of a rotation costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Self, cast

from syncd.auth.provider import TokenProvider
from syncd.auth.shared import Adopted, SharedRefresh, as_token
from syncd.auth.token import AccessToken, fingerprint
from syncd.clock import Clock
from syncd.errors import NeedsReauthError, StoreError, SyncdError
from syncd.logging import get_logger
from syncd.redaction import Redactor
from syncd.store import Store, TokenEvent, TokenRecord
from syncd.store.base import TokenEventKind

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Idle:
    """No renewal under way: `token` is the saved token (None: none yet, or the store not read)."""

    token: AccessToken | None = None
    loaded: bool = False  # the store has been read (or written) for this credential
    failure: SyncdError | None = None  # why the last renewal or save failed


@dataclass(frozen=True, slots=True)
class Renewing:
    """A renewal is under way: its token request is on the wire (or it waits for another
    replica's). `token` is the saved token it replaces."""

    task: asyncio.Task[AccessToken]
    source: str  # whose caller started it
    token: AccessToken | None
    failure: None = None


@dataclass(frozen=True, slots=True)
class Unsaved:
    """A renewed token not written yet: the newest credential, known to this process only.

    `task` is the renewal still writing it (None once no one is: the next `get` writes it)."""

    token: AccessToken
    source: str
    renewed: bool  # a refresh of an earlier token, not the first one
    failed_writes: int = 0
    failure: SyncdError | None = None
    task: asyncio.Task[AccessToken] | None = None


CacheState = Idle | Renewing | Unsaved
"""What a credential's entry is doing. Every transition installs a new (frozen) state, so a
caller that waited on the entry's lock sees by identity whether a round ran meanwhile."""


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: CacheState = field(default_factory=Idle)


def _ready(state: CacheState, now: datetime, margin: float) -> AccessToken | None:
    """The state's token if it may be handed out as it is: saved, and fresh."""
    if isinstance(state, Idle) and state.token is not None and state.token.is_fresh(now, margin):
        return state.token
    return None


def _running(state: CacheState) -> asyncio.Task[AccessToken] | None:
    """The renewal task still under way in `state`, if any."""
    task = state.task if isinstance(state, Renewing | Unsaved) else None
    return task if task is not None and not task.done() else None


def _retrieve(task: asyncio.Task[AccessToken]) -> None:
    # A renewal whose caller was cancelled still ends; its error is already logged as an event.
    if not task.cancelled():
        task.exception()


class TokenCache:
    """Hands out valid tokens per credential; at most one token request is in flight per
    credential, in this process and (through the store, `SharedRefresh`) across replicas.

    `save_attempts` writes (`save_retry_delay` seconds apart) are tried to save a renewed token
    before its caller is told the database failed; every later `get` tries as many again. On exit
    the cache waits up to `exit_wait` seconds for renewals still on the wire (their callers may
    have been cancelled by a shutdown), then saves what it holds unsaved. `owner` names this
    replica on the token row's refresh intent and on every token event; a replica waiting for
    another's refresh polls the row every `poll_interval` seconds, and takes over an intent older
    than `stale_after` (docs/SCALING.md).
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
        owner: str | None = None,
        poll_interval: float = 0.5,
        stale_after: float = 300.0,
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
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._shared = SharedRefresh(
            store, clock, self.owner, poll_interval=poll_interval, stale_after=stale_after
        )

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
        pending: dict[asyncio.Task[AccessToken], str] = {}
        for entry in self._entries.values():
            task = _running(entry.state)
            if task is not None:
                pending[task] = cast(Renewing | Unsaved, entry.state).source
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._exit_wait)
            for task in late:
                task.cancel()
                log.error(
                    "token.lost",
                    source=pending[task],
                    fingerprint=None,
                    consequence="the process stops while a token request is unanswered: if the "
                    "store rotates single-use refresh tokens, the next refresh may be refused and "
                    "the source then needs 'syncd auth'",
                )
            await asyncio.gather(*late, return_exceptions=True)
        for key, entry in list(self._entries.items()):
            async with entry.lock:
                unsaved = entry.state
                if not isinstance(unsaved, Unsaved):
                    continue
                with contextlib.suppress(StoreError):
                    await self._save_unsaved(key, entry, unsaved, attempts=1)
                if isinstance(entry.state, Unsaved):
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
        ready = _ready(entry.state, self._clock.now(), provider.refresh_margin)
        if ready is not None:
            return ready
        seen = entry.state
        async with entry.lock:
            # Double-checked: whoever held the lock before us may have refreshed already.
            now = self._clock.now()
            state = entry.state
            ready = _ready(state, now, provider.refresh_margin)
            if ready is not None:
                return ready
            if state is not seen and state.failure is not None:
                # The request we waited for failed: share its answer instead of asking again.
                raise state.failure
            running = _running(state)
            if running is not None:
                # Its caller was cancelled, but it runs on (it may be saving a rotated token):
                # its answer is ours too, and a second save or request beside it would be wrong.
                return await asyncio.shield(running)
            token = state.token if not isinstance(state, Unsaved) else None
            if isinstance(state, Unsaved):
                # Saved before anything else: its refresh token may be the only live one.
                token = await self._save_unsaved(provider.cache_key, entry, state)
                if token.is_fresh(now, provider.refresh_margin):
                    return token
            # Another process (`syncd auth`, a CLI sync, another replica) may have stored a newer
            # grant since: start from the persisted one, whose refresh token is the latest.
            entry.state = Idle(token, loaded=True)
            stored = await self._load(provider)
            if stored is not None and (token is None or stored.value != token.value):
                if stored.is_fresh(now, provider.refresh_margin):
                    entry.state = Idle(stored, loaded=True)
                    await self._event(source, "reused", stored, "persisted token still valid")
                    return stored
                token = stored
            renewal = asyncio.create_task(self._renew(provider, entry, token, source))
            renewal.add_done_callback(_retrieve)
            entry.state = Renewing(renewal, source, token)
            # Shielded: once a refresh is on the wire its answer may hold the only copy of a rotated
            # refresh token; a cancelled caller must not drop it before it is persisted.
            return await asyncio.shield(renewal)

    async def _renew(
        self, provider: TokenProvider, entry: _Entry, previous: AccessToken | None, source: str
    ) -> AccessToken:
        try:
            claim = await self._shared.claim(provider, previous, source)
        except SyncdError as exc:
            entry.state = Idle(previous, loaded=True, failure=exc)
            await self._event(source, "failed", None, str(exc), level="error")
            raise
        if isinstance(claim, Adopted):
            token = self._known(claim.token)
            entry.state = Idle(token, loaded=True)
            detail = (
                f"refreshed by replica {claim.by}" if claim.by else "persisted token still valid"
            )
            await self._event(source, "reused", token, detail)
            return token
        previous = self._known(claim.previous) if claim.previous else None
        try:
            new = self._known(await provider.obtain(previous))
        except SyncdError as exc:
            entry.state = Idle(previous, loaded=True, failure=exc)
            with contextlib.suppress(StoreError):  # else the intent goes stale: see SharedRefresh
                await self._shared.abandon(provider, refused=isinstance(exc, NeedsReauthError))
            await self._event(source, "failed", None, str(exc), level="error")
            raise
        # Kept before the first write, so that no failure from here on can lose it.
        unsaved = Unsaved(new, source, previous is not None, task=asyncio.current_task())
        return await self._save_unsaved(provider.cache_key, entry, unsaved)

    async def _save_unsaved(
        self, key: str, entry: _Entry, unsaved: Unsaved, *, attempts: int | None = None
    ) -> AccessToken:
        """Write `unsaved` (bounded retries); then it is the current token. StoreError if not."""
        entry.state = unsaved = replace(unsaved, failure=None)
        token, source = unsaved.token, unsaved.source
        attempts = attempts or self._save_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._persist(key, token)
            except StoreError as exc:
                entry.state = unsaved = replace(unsaved, failed_writes=unsaved.failed_writes + 1)
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
                    entry.state = replace(unsaved, failure=failure)
                    raise failure from exc
                await self._clock.sleep(self._save_retry_delay)
            else:
                break
        entry.state = Idle(token, loaded=True)
        failed = unsaved.failed_writes
        detail = f"saved after {failed} failed write(s)" if failed else None
        await self._event(source, "refreshed" if unsaved.renewed else "issued", token, detail)
        return token

    async def invalidate(self, provider: TokenProvider, rejected: AccessToken, source: str) -> bool:
        """Drop `rejected` if it is still the current token (so N concurrent 401s refresh once)."""
        entry = self._entry(provider)
        async with entry.lock:
            state = entry.state
            if not isinstance(state, Idle):
                return False  # a newer token is on its way; `get` saves it before use
            current = state.token
            if current is None or current.value != rejected.value or current.revoked:
                return False
            entry.state = Idle(replace(current, revoked=True), loaded=True)
            # Persisted so a restart (or another replica) does not resurrect a token the server
            # refused; only if it is still the stored one, and the refresh token is kept for
            # flows that can trade it in.
            await asyncio.shield(
                self._store.revoke_token(provider.cache_key, current.value, self._clock.now())
            )
            await self._event(source, "invalidated", current, "rejected with HTTP 401")
            return True

    async def install(self, provider: TokenProvider, token: AccessToken, source: str) -> None:
        """Store a token obtained outside the cache (e.g. by `syncd auth`) as the current one."""
        entry = self._entry(provider)
        self._known(token)
        async with entry.lock:
            await self._persist(provider.cache_key, token)
            # The operator's grant supersedes one this process could not save.
            entry.state = Idle(token, loaded=True)
            await self._event(source, "issued", token, "installed by an operator")

    async def current(self, provider: TokenProvider) -> AccessToken | None:
        """The cached (or persisted) token for `provider`, fresh or not, without obtaining one."""
        state = self._entry(provider).state
        if isinstance(state, Unsaved):
            return state.token
        if state.token is None and isinstance(state, Idle) and not state.loaded:
            return await self._load(provider)
        return state.token

    async def _load(self, provider: TokenProvider) -> AccessToken | None:
        record = await self._store.load_token(provider.cache_key)
        if record is None:
            return None
        return self._known(as_token(record, self._clock.now()))

    async def _persist(self, key: str, token: AccessToken) -> None:
        record = TokenRecord(token.value, token.expires_at, token.refresh_token, token.obtained_at)
        # Shielded: a cancelled run must not lose a rotated refresh token half-way. The write
        # also ends this replica's refresh intent on the row (docs/SCALING.md).
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
            owner=self.owner,
        )
        await self._store.add_token_event(
            TokenEvent(source, self._clock.now(), event, expires, fp, detail, self.owner)
        )

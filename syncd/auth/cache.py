"""The token cache shared by every request of every source: single-flight, refresh-ahead, persisted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from syncd.auth.provider import TokenProvider
from syncd.auth.token import AccessToken
from syncd.clock import Clock
from syncd.errors import SyncdError
from syncd.logging import get_logger
from syncd.store import Store, TokenEvent, TokenRecord

log = get_logger(__name__)


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: AccessToken | None = None
    loaded: bool = False
    renewal: asyncio.Task[AccessToken] | None = None
    requests: int = 0
    failure: SyncdError | None = None


def _retrieve(task: asyncio.Task[AccessToken]) -> None:
    # A renewal whose caller was cancelled still ends; its error is already logged as an event.
    if not task.cancelled():
        task.exception()


class TokenCache:
    """Hands out valid tokens per credential; at most one token request is in flight per credential."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def _entry(self, provider: TokenProvider) -> _Entry:
        return self._entries.setdefault(provider.cache_key, _Entry())

    async def get(self, provider: TokenProvider, source: str) -> AccessToken:
        """A token fresh enough to send now, obtaining one if needed (once, however many callers)."""
        entry = self._entry(provider)
        token = entry.token
        if token is not None and token.is_fresh(self._clock.now(), provider.refresh_margin):
            return token
        requests_before = entry.requests
        async with entry.lock:
            # Double-checked: whoever held the lock before us may have refreshed already.
            token = entry.token
            now = self._clock.now()
            if token is not None and token.is_fresh(now, provider.refresh_margin):
                return token
            if entry.requests != requests_before and entry.failure is not None:
                # The request we waited for failed: share its answer instead of asking again.
                raise entry.failure
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
            # Shielded: once a refresh is on the wire its answer may hold the only copy of a rotated
            # refresh token; a cancelled caller must not drop it before it is persisted.
            return await asyncio.shield(renewal)

    async def _renew(
        self, provider: TokenProvider, entry: _Entry, previous: AccessToken | None, source: str
    ) -> AccessToken:
        entry.requests += 1
        try:
            new = await provider.obtain(previous)
        except SyncdError as exc:
            entry.failure = exc
            await self._event(source, "failed", None, str(exc), level="error")
            raise
        entry.failure = None
        await self._persist(provider, new)
        entry.token = new
        await self._event(source, "issued" if previous is None else "refreshed", new, None)
        return new

    async def invalidate(self, provider: TokenProvider, rejected: AccessToken, source: str) -> bool:
        """Drop `rejected` if it is still the current token (so N concurrent 401s refresh once)."""
        entry = self._entry(provider)
        async with entry.lock:
            current = entry.token
            if current is None or current.value != rejected.value or current.revoked:
                return False
            entry.token = replace(current, revoked=True)
            # Persist the revocation so a restart does not resurrect a token the server refused;
            # the refresh token is kept for flows that can trade it in.
            await self._persist(provider, replace(current, expires_at=self._clock.now()))
            await self._event(source, "invalidated", current, "rejected with HTTP 401")
            return True

    async def install(self, provider: TokenProvider, token: AccessToken, source: str) -> None:
        """Store a token obtained outside the cache (e.g. by `syncd auth`) as the current one."""
        entry = self._entry(provider)
        async with entry.lock:
            await self._persist(provider, token)
            entry.token = token
            entry.loaded = True
            await self._event(source, "issued", token, "installed by an operator")

    async def current(self, provider: TokenProvider) -> AccessToken | None:
        """The cached (or persisted) token for `provider`, fresh or not, without obtaining one."""
        entry = self._entry(provider)
        if entry.token is None and not entry.loaded:
            return await self._load(provider)
        return entry.token

    async def _load(self, provider: TokenProvider) -> AccessToken | None:
        record = await self._store.load_token(provider.cache_key)
        if record is None:
            return None
        return AccessToken(
            value=record.access_token,
            expires_at=record.expires_at,
            obtained_at=record.issued_at or self._clock.now(),
            refresh_token=record.refresh_token,
        )

    async def _persist(self, provider: TokenProvider, token: AccessToken) -> None:
        record = TokenRecord(token.value, token.expires_at, token.refresh_token, token.obtained_at)
        # Shielded: a cancelled run must not lose a rotated refresh token half-way.
        await asyncio.shield(self._store.save_token(provider.cache_key, record, self._clock.now()))

    async def _event(
        self,
        source: str,
        event: str,
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

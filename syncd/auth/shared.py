"""The fleet-wide half of a token renewal: which replica refreshes a credential, and who waits.

Every replica (process) on one database shares each credential's row. Before a refresh is sent,
its replica commits an intent on the row by compare-and-set on the row's version
(`Store.begin_token_refresh`); a replica that loses waits, polling the row every
`poll_interval` seconds, for the winner's token instead of sending a request of its own. Saving
the new token ends the intent (`Store.save_token`); a failed refresh abandons it.

An intent older than `stale_after` belongs to a replica that died (or hung) mid-request. For a
reusable credential (IMS client credentials) another replica simply takes the intent over and
fetches again. A provider that spends its refresh token (`SpendsRefreshTokens`: AmeriCommerce's
single-use rotation) never presents it a second time: the refresh may have been answered and the
answer lost with the replica, so the grant is dropped and the source flagged `needs_reauth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.auth.provider import SpendsRefreshTokens, TokenProvider
from syncd.auth.token import AccessToken
from syncd.clock import Clock
from syncd.errors import NeedsReauthError
from syncd.logging import get_logger
from syncd.store import Store, TokenRecord, TokenState

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Won:
    """This replica holds the refresh intent: it sends the request, trading in `previous` (the
    newest stored token, whose refresh token is the latest)."""

    previous: AccessToken | None


@dataclass(frozen=True, slots=True)
class Adopted:
    """Another replica refreshed (or an operator installed) a token fresh enough to use."""

    token: AccessToken
    by: str | None  # the replica whose intent this replica waited for, if it saw one


def as_token(record: TokenRecord, now: datetime) -> AccessToken:
    """A stored credential as the access token it describes (`now` if its issue time is unknown)."""
    return AccessToken(
        value=record.access_token,
        expires_at=record.expires_at,
        obtained_at=record.issued_at or now,
        refresh_token=record.refresh_token,
    )


def spends_refresh_token(provider: TokenProvider) -> bool:
    """True when a refresh by `provider` may consume the refresh token it presents."""
    return isinstance(provider, SpendsRefreshTokens) and provider.spends_refresh_token()


class SharedRefresh:
    """Coordinates the replicas' refreshes of one credential through its stored row."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        owner: str,
        *,
        poll_interval: float = 0.5,
        stale_after: float = 300.0,
    ) -> None:
        if poll_interval <= 0 or stale_after <= 0:
            raise ValueError("SharedRefresh needs poll_interval > 0 and stale_after > 0")
        self._store = store
        self._clock = clock
        self.owner = owner
        self._poll = poll_interval
        self._stale = timedelta(seconds=stale_after)

    async def claim(
        self, provider: TokenProvider, previous: AccessToken | None, source: str
    ) -> Won | Adopted:
        """Take the refresh intent (Won) or wait for whoever holds it (Adopted); NeedsReauthError
        when a stale intent may have spent a single-use refresh token."""
        key, margin = provider.cache_key, provider.refresh_margin
        waited_for: str | None = None
        while True:
            now = self._clock.now()
            row = await self._store.token_state(key)
            stored = as_token(row.token, now) if row and row.token else None
            if stored is not None and stored.is_fresh(now, margin):
                return Adopted(stored, waited_for)
            if row is not None and row.refreshing_by is not None:
                started = row.refresh_started_at
                if started is not None and started >= now - self._stale:
                    waited_for = row.refreshing_by
                    await self._clock.sleep(self._poll)
                    continue
                if await self._take_stale(provider, row, stored, source):
                    return Won(stored or previous)
                continue
            if await self._store.begin_token_refresh(
                key, row.version if row else 0, self.owner, now, now - self._stale
            ):
                return Won(stored or previous)
            # Another replica's intent committed first: the next read sees it, and waits.

    async def _take_stale(
        self, provider: TokenProvider, row: TokenState, stored: AccessToken | None, source: str
    ) -> bool:
        """Take over an intent older than `stale_after`; True if this replica may now refresh."""
        now = self._clock.now()
        if not await self._store.begin_token_refresh(
            provider.cache_key, row.version, self.owner, now, now - self._stale
        ):
            return False  # another replica took it over first
        spends = spends_refresh_token(provider) and bool(stored and stored.refresh_token)
        log.warning(
            "token.stale_intent",
            source=source,
            holder=row.refreshing_by,
            started_at=row.refresh_started_at.isoformat() if row.refresh_started_at else None,
            consequence="the grant is dropped: its refresh token may have been spent"
            if spends
            else "this replica fetches the token again",
        )
        if not spends:
            return True
        await self._store.abandon_token_refresh(provider.cache_key, self.owner, now, spent=True)
        raise NeedsReauthError(
            f"replica {row.refreshing_by} began refreshing the grant of source {source!r} and "
            "never finished: its single-use refresh token may be spent, and is not presented "
            f"again: run 'syncd auth {source}'",
            source=source,
        )

    async def abandon(self, provider: TokenProvider, *, refused: bool) -> None:
        """End this replica's intent after a failed refresh; `refused` (the grant itself was
        refused) also drops a refresh token that would be refused again."""
        spent = refused and spends_refresh_token(provider)
        await self._store.abandon_token_refresh(
            provider.cache_key, self.owner, self._clock.now(), spent=spent
        )

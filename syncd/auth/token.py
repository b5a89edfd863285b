"""The access token value: its secret never appears in a repr, only its fingerprint does."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from syncd.redaction import fingerprint

__all__ = ["AccessToken", "fingerprint"]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer credential and what is known of its lifetime."""

    value: str = field(repr=False)
    expires_at: datetime | None
    obtained_at: datetime
    refresh_token: str | None = field(default=None, repr=False)
    revoked: bool = False

    @property
    def fingerprint(self) -> str:
        """Loggable identity of this token."""
        return fingerprint(self.value)

    def is_fresh(self, now: datetime, margin: float) -> bool:
        """True while the token may still be sent: not revoked and more than `margin` from expiry.

        The margin is capped at half the token's lifetime so that a short-lived token is not
        refreshed on every request.
        """
        if self.revoked:
            return False
        if self.expires_at is None:
            return True
        lifetime = (self.expires_at - self.obtained_at).total_seconds()
        effective = min(margin, max(0.0, lifetime / 2))
        return (self.expires_at - now).total_seconds() > effective

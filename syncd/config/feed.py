"""Settings of the change feed (`[changes]`) and of the webhooks that push it (`[[webhooks]]`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from syncd.config.base import SOURCE_NAME, StrictModel
from syncd.config.sources import non_blank_secret

WEEK = 7 * 86400.0


class ChangesSettings(StrictModel):
    """The change feed (docs/CHANGES.md): on by default, entries kept for a week."""

    enabled: bool = Field(
        default=True, description="append every product change to product_changes"
    )
    store_payloads: bool = Field(
        default=False,
        description="copy each payload into its entry (history) instead of reading the row's",
    )
    retention: float = Field(
        default=WEEK, gt=0, description="seconds an entry is kept; older ones are pruned"
    )


class WebhookSettings(StrictModel):
    """One receiver of the feed: batches of entries POSTed, signed, in order per source."""

    name: str = Field(description="names its cursor in webhook_cursors and its secret lookup")
    url: str
    secret: SecretStr
    sources: tuple[str, ...] = Field(default=(), description="empty: every source")
    batch_size: int = Field(default=100, ge=1, le=10_000)
    timeout: float = Field(default=10.0, gt=0, description="seconds one delivery may take")
    backoff_base: float = Field(default=1.0, gt=0, description="first retry delay cap, seconds")
    backoff_cap: float = Field(default=300.0, gt=0, description="longest retry delay, seconds")
    retry_interval: float = Field(
        default=60.0, gt=0, description="seconds between deliveries when no run wakes it"
    )

    @field_validator("secret")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr) -> SecretStr:
        return non_blank_secret(value)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not SOURCE_NAME.match(name):
            raise ValueError("expected lowercase letters, digits, '-' or '_' (at most 63)")
        return name

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return url

"""One `[[sources]]` entry per store: the common keys, then each platform's own (and its auth)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncd.config.base import (
    ACCS_SCOPE,
    DEFAULT_IMS_SCOPES,
    IMS_TOKEN_URL,
    SOURCE_NAME,
    StrictModel,
)
from syncd.schedule import IntervalSchedule, Schedule, parse_schedule

# An interrupted full scan older than this starts over: its early pages would be stale.
CHECKPOINT_MAX_AGE = 6 * 3600.0


def non_blank_secret(value: SecretStr) -> SecretStr:
    """`value` unless it is empty or only spaces (e.g. an empty SYNCD_SECRET_* variable)."""
    if not value.get_secret_value().strip():
        raise ValueError("expected a non-empty secret")
    return value


# Magento's own rule for a store code (Store\Model\Validation\StoreCodeValidator).
STORE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class ImsAuthSettings(StrictModel):
    """Adobe IMS OAuth Server-to-Server credentials (client_credentials grant).

    `flavour = "accs"` (the default, and what every config without one meant) is Adobe Commerce as
    a Cloud Service, whose APIs need the `commerce.accs` scope; `"paas"` is Adobe Commerce on cloud
    infrastructure or on premises with Adobe IMS, where that scope is not required.
    """

    kind: Literal["ims"] = "ims"
    flavour: Literal["accs", "paas"] = "accs"
    token_url: AnyHttpUrl = AnyHttpUrl(IMS_TOKEN_URL)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    org_id: str = Field(min_length=1)
    scopes: tuple[str, ...] = DEFAULT_IMS_SCOPES
    refresh_margin: float = Field(
        default=600.0, ge=0, description="refresh this many seconds early"
    )

    @field_validator("client_secret")
    @classmethod
    def _secret_given(cls, value: SecretStr) -> SecretStr:
        return non_blank_secret(value)

    @field_validator("scopes")
    @classmethod
    def _needs_accs(cls, scopes: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # `flavour` is declared before `scopes`, so it is validated (or missing) by now.
        if info.data.get("flavour", "accs") == "accs" and ACCS_SCOPE not in scopes:
            raise ValueError(
                f"must include {ACCS_SCOPE!r}, which Adobe Commerce as a Cloud Service (ACCS) "
                'APIs require (for a PaaS or on-premises store with IMS, set flavour = "paas")'
            )
        return scopes

    @property
    def requested_scopes(self) -> tuple[str, ...]:
        """The scopes asked for: the configured ones; a PaaS store left at the default list does
        not ask for the ACCS-only scope, which IMS may refuse to a non-ACCS project."""
        if self.flavour == "paas" and "scopes" not in self.model_fields_set:
            return tuple(s for s in self.scopes if s != ACCS_SCOPE)
        return self.scopes


class IntegrationBearerAuthSettings(StrictModel):
    """A Magento integration's access token sent as `Authorization: Bearer` (Magento 2.4.4+ with
    "Allow OAuth Access Tokens to be used as standalone Bearer tokens" enabled). It never expires."""

    kind: Literal["bearer"]
    access_token: SecretStr

    @field_validator("access_token")
    @classmethod
    def _secret_given(cls, value: SecretStr) -> SecretStr:
        return non_blank_secret(value)


class IntegrationOAuth1AuthSettings(StrictModel):
    """A Magento integration's four credentials: every request is signed with OAuth 1.0a."""

    kind: Literal["oauth1"]
    consumer_key: str = Field(min_length=1)
    consumer_secret: SecretStr
    access_token: SecretStr
    access_token_secret: SecretStr
    signature_method: Literal["HMAC-SHA256", "HMAC-SHA1"] = Field(
        default="HMAC-SHA256", description="Magento's default is HMAC-SHA256"
    )

    @field_validator("consumer_secret", "access_token", "access_token_secret")
    @classmethod
    def _secret_given(cls, value: SecretStr) -> SecretStr:
        return non_blank_secret(value)

    @field_validator("consumer_key")
    @classmethod
    def _no_padding(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("expected no surrounding spaces (it is part of every signature)")
        return value


AdobeAuthSettings = Annotated[
    ImsAuthSettings | IntegrationBearerAuthSettings | IntegrationOAuth1AuthSettings,
    Field(discriminator="kind"),
]


class AmeriCommerceAuthSettings(StrictModel):
    """AmeriCommerce signature OAuth; `auth_scheme` picks the 2014 (`legacy`) or later (`current`) docs.

    `app_id` and `redirect_url` may also be spelled `client_id` and `redirect_uri` (the current
    edition's names); they are the same settings, so give one spelling of each.
    """

    auth_scheme: Literal["legacy", "current"] = "current"
    app_id: str = Field(
        default="",
        validation_alias=AliasChoices("app_id", "client_id"),
        description="the app (client) id from the admin console",
    )
    app_secret: SecretStr | None = None
    scope: str = Field(default="read_catalog", min_length=1)
    redirect_url: str = Field(
        default="http://127.0.0.1:8765/callback",
        validation_alias=AliasChoices("redirect_url", "redirect_uri"),
        description="sent and signed exactly as written; the web flow listens on it",
    )
    desktop_signature: Literal["prose", "summary"] = "prose"
    body_format: Literal["json", "form"] = "json"
    static_token: SecretStr | None = None
    refresh_margin: float = Field(default=300.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for legacy, current in (("app_id", "client_id"), ("redirect_url", "redirect_uri")):
                if legacy in data and current in data:
                    raise ValueError(
                        f"{legacy} and {current} are two names of one setting: give only one"
                    )
        return data

    @field_validator("app_secret", "static_token")
    @classmethod
    def _secret_given(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else non_blank_secret(value)

    @field_validator("redirect_url")
    @classmethod
    def _redirect_shape(cls, value: str) -> str:
        # Kept as a string, never normalised: the store compares and signs the exact spelling.
        if not value or value != value.strip():
            raise ValueError("expected a non-empty value without surrounding spaces")
        return value

    @field_validator("app_id", "scope")
    @classmethod
    def _no_padding(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("expected no surrounding spaces (it is part of every signature)")
        return value

    @model_validator(mode="after")
    def _has_a_credential(self) -> AmeriCommerceAuthSettings:
        if self.static_token is None and (not self.app_id or self.app_secret is None):
            raise ValueError("set either static_token, or app_id and app_secret")
        return self


class _SourceBase(StrictModel):
    name: str
    base_url: AnyHttpUrl
    page_size: int = Field(default=100, ge=1, le=1000)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    schedule: str = "15m"
    full_schedule: str | None = Field(default=None, description="periodic full runs, e.g. nightly")
    request_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    incremental_overlap: float = Field(
        default=120.0, ge=0, description="seconds re-read before the watermark (skew, same-second)"
    )
    checkpoint_max_age: float = Field(
        default=CHECKPOINT_MAX_AGE,
        gt=0,
        description="seconds after its start within which an interrupted full scan is resumed",
    )
    rate_limit: float | None = Field(
        default=None, gt=0, description="requests per second, None = off"
    )
    rate_burst: int | None = Field(default=None, ge=1)
    stale_after: float | str = Field(
        default=3.0,
        description="stale when the last success is older than this many schedule periods, "
        'or than a duration such as "26h"',
    )
    enabled: bool = True
    max_catalog_size: int = Field(
        default=10_000_000,
        ge=1,
        description="the largest total_count believed; a larger one fails the run",
    )
    breaker_threshold: int = Field(
        default=3, ge=1, description="consecutive failed runs before the source is backed off"
    )
    breaker_base_delay: float = Field(
        default=60.0, gt=0, description="seconds of the first backoff; doubles per further failure"
    )
    breaker_max_delay: float = Field(
        default=3600.0, gt=0, description="longest backoff between two runs of a failing source"
    )

    @field_validator("name")
    @classmethod
    def _name_shape(cls, name: str) -> str:
        if not SOURCE_NAME.match(name):
            raise ValueError("expected lowercase letters, digits, '-' or '_' (at most 63)")
        return name

    @field_validator("schedule", "full_schedule")
    @classmethod
    def _schedule_shape(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value

    @field_validator("stale_after")
    @classmethod
    def _stale_after_shape(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            try:
                parsed = parse_schedule(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, IntervalSchedule):
                raise ValueError(
                    'expected a multiple of the schedule period (e.g. 3) or a duration such as "26h"'
                )
        elif value < 1:
            raise ValueError("a multiple of the schedule period must be at least 1")
        return value

    @model_validator(mode="after")
    def _breaker_delays_ordered(self) -> Self:
        # BreakerPolicy refuses this too, but only when the daemon starts: say it at check-config.
        if self.breaker_base_delay > self.breaker_max_delay:
            raise ValueError(
                f"breaker_base_delay ({self.breaker_base_delay:g}) must not exceed "
                f"breaker_max_delay ({self.breaker_max_delay:g}): raise breaker_max_delay or "
                "lower breaker_base_delay"
            )
        return self

    @property
    def parsed_schedule(self) -> Schedule:
        """The schedule as a typed value."""
        return parse_schedule(self.schedule)

    @property
    def parsed_full_schedule(self) -> Schedule | None:
        """The periodic full-run schedule, if any."""
        return parse_schedule(self.full_schedule) if self.full_schedule else None


class AdobeCommerceSourceSettings(_SourceBase):
    """An Adobe Commerce / Magento 2 REST store: ACCS behind Adobe IMS, or any Magento 2 store
    with an integration's credentials (bearer token or OAuth 1.0a signing).

    An `auth` table without `kind` is IMS, which was the only kind before the others existed.
    """

    kind: Literal["adobe_commerce"]
    auth: AdobeAuthSettings
    store_code: str | None = Field(
        default=None, description="the store view code in /rest/<code>/V1/...; none = default"
    )

    @model_validator(mode="before")
    @classmethod
    def _ims_by_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            auth = data.get("auth")
            if isinstance(auth, Mapping) and "kind" not in auth:
                return {**data, "auth": {**auth, "kind": "ims"}}
        return data

    @field_validator("store_code")
    @classmethod
    def _store_code_shape(cls, value: str | None) -> str | None:
        if value is not None and not STORE_CODE.match(value):
            raise ValueError(
                "expected a Magento store code: a letter, then letters, digits or '_' "
                "(at most 32), e.g. 'default'"
            )
        return value

    @property
    def rest_prefix(self) -> str:
        """`<base_url>/rest` or `<base_url>/rest/<store_code>`: where `/V1/...` paths start."""
        base = str(self.base_url).rstrip("/") + "/rest"
        return f"{base}/{self.store_code}" if self.store_code else base


class AmeriCommerceSourceSettings(_SourceBase):
    """An AmeriCommerce store: `page_size` is the `count` parameter; requests are paced by the
    store's `X-AC-Call-Limit` header."""

    kind: Literal["americommerce"]
    auth: AmeriCommerceAuthSettings
    call_window: float = Field(
        default=10.0, gt=0, le=3600, description="seconds of the store's call-limit window"
    )
    call_limit_reserve: int = Field(
        default=0, ge=0, le=49, description="calls per window left to other apps of the store"
    )
    naive_time_offset: int | None = Field(
        default=None,
        ge=-840,
        le=840,
        description="minutes east of UTC of timestamps the store sends without an offset",
    )


SourceSettings = Annotated[
    AdobeCommerceSourceSettings | AmeriCommerceSourceSettings, Field(discriminator="kind")
]

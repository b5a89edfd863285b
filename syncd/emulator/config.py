"""What an emulated store looks like and how it misbehaves: frozen settings, one dataclass per platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from syncd.emulator.cost import ServerCost

FaultKind = Literal[
    "status", "html", "slow", "truncated", "malformed", "json", "disconnect", "reset"
]
FaultTarget = Literal["api", "token"]
RetryAfterFormat = Literal["seconds", "http-date"]


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """A token bucket: `rate` requests per second refill, at most `burst` in a row."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("RateLimitConfig needs rate > 0 and burst >= 1")


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure, matched against requests to `target` (the API or the token endpoint).

    `disconnect` closes the connection without an answer; `reset` aborts it with a TCP RST.
    `json` answers 200 with `body` (valid JSON of the wrong shape: a broken proxy or store).
    `reused_only` matches only requests that arrive on a kept-alive connection which has already
    served one (the keep-alive race). `duration` keeps the fault armed for that many seconds of
    the emulator's clock (an outage), whatever `times` says.
    """

    kind: FaultKind
    target: FaultTarget = "api"
    times: int | None = 1
    probability: float = 1.0
    after: int = 0
    status: int = 503
    delay: float = 0.0
    reused_only: bool = False
    duration: float | None = None
    body: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("Fault.probability must be within [0, 1]")
        if self.times is not None and self.times < 1:
            raise ValueError("Fault.times must be >= 1 or None (until cleared)")
        if self.after < 0 or self.delay < 0:
            raise ValueError("Fault.after and Fault.delay cannot be negative")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("Fault.duration must be positive or None (no time limit)")
        if self.kind == "json" and not self.body:
            raise ValueError("Fault('json') needs the body to answer with")


@dataclass(frozen=True, slots=True)
class AdobeConfig:
    """Adobe IMS plus an Adobe Commerce (ACCS) REST catalog."""

    products: int = 3000
    client_id: str = "syncd-emulator-client"
    client_secret: str = "syncd-emulator-secret"  # noqa: S105 - the emulator's own fake credential
    org_id: str = "EMULATOR0000@AdobeOrg"
    required_scope: str = "commerce.accs"
    token_lifetime: int = 86399
    past_end: Literal["empty", "repeat"] = "empty"
    page_size_cap: int | None = None
    # True: a pageSize above the cap is silently served as the cap (a store customised to clamp
    # it) instead of Magento's 400.
    page_size_cap_silent: bool = False
    # Magento's "Default Page Size" (input limits): applies only when page_size_cap is set.
    default_page_size: int = 20
    rate_limit: RateLimitConfig | None = None
    latency: float = 0.0
    # What a list page costs the server (None: the emulator's own, well under a millisecond).
    cost: ServerCost | None = None
    retry_after_format: RetryAfterFormat = "seconds"
    # MySQL returns rows with equal ORDER BY values in any order; keep that unless a test needs calm.
    unstable_ties: bool = True
    # "magento": token failures answer Magento's 401; "gateway": the Adobe I/O gateway's 401013.
    auth_error_style: Literal["magento", "gateway"] = "magento"


@dataclass(frozen=True, slots=True)
class AmeriCommerceConfig:
    """An AmeriCommerce (Cart.com) store: signature OAuth and the v1 REST catalog."""

    products: int = 500
    scheme: Literal["legacy", "current"] = "current"
    app_id: str = "syncd-emulator-app"
    app_secret: str = "syncd-emulator-app-secret"  # noqa: S105 - the emulator's own fake credential
    users: dict[str, str] = field(default_factory=lambda: {"admin": "syncd-emulator-user-key"})
    scope: str = "read_catalog"
    token_lifetime: int = 3600
    expires_format: Literal["datetime", "seconds"] = "datetime"
    refresh_tokens: Literal["reusable", "single_use"] = "reusable"
    desktop_exchange_signature: Literal["prose", "summary"] = "prose"
    call_limit: int = 10
    call_window: float = 10.0
    # Another app installed on the store: its calls per window, at seeded random moments.
    other_app_calls: int = 0
    # One window per access token: the emulator stands for as many stores as there are tokens.
    call_limit_per_token: bool = False
    static_tokens: tuple[str, ...] = ()
    deny_web_grant: bool = False
    response_cache_seconds: float = 30
    response_cache_entries: int = 512
    code_lifetime: int = 600
    max_count: int | None = None
    retry_after_format: RetryAfterFormat = "seconds"
    # The store renders datetimes in its own zone, e.g. "2014-03-19T13:31:47.923-05:00".
    utc_offset_minutes: int = -300
    unstable_ties: bool = True
    latency: float = 0.0
    # What a list page costs the server (None: the emulator's own, well under a millisecond).
    cost: ServerCost | None = None

    def __hash__(self) -> int:
        return hash((self.app_id, self.scheme, self.products))


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Both platforms, the seed every generated value derives from, and the request-log bound."""

    adobe: AdobeConfig = field(default_factory=AdobeConfig)
    americommerce: AmeriCommerceConfig = field(default_factory=AmeriCommerceConfig)
    seed: int = 0
    # Generated created_at/updated_at values lie in the year before this moment (None: start-up).
    catalog_until: datetime | None = None
    log_size: int = 10_000

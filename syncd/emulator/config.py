"""What an emulated store looks like and how it misbehaves: frozen settings, one dataclass per platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from syncd.emulator.cost import ServerCost

FaultKind = Literal[
    "status",
    "html",
    "slow",
    "truncated",
    "malformed",
    "json",
    "disconnect",
    "reset",
    "redirect",
    "oversized",
    "huge_total",
    "nested",
    "echo",  # an error body quoting the credentials the request carried (see Fault)
    # Page faults (a cache or proxy in front of the catalog), on full-scan offset pages only.
    "empty_page",
    "short_page",
    "duplicate_sku",
    "stale_page",
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
    `echo` answers `status` with an error body (in every platform's error keys) that quotes what
    the request carried: its form or JSON fields, its credential headers and its query, the way a
    debugging proxy or a careless error page does (`body`, if given, is its OAuth `error` code).
    `reused_only` matches only requests that arrive on a kept-alive connection which has already
    served one (the keep-alive race). `duration` keeps the fault armed for that many seconds of
    the emulator's clock (an outage), whatever `times` says.

    Hostile answers (see `emulator.hostile`): `redirect` answers `status` (a 3xx) with a Location
    on the origin `location` (same path and query: a load balancer sending clients elsewhere);
    `oversized` answers 200 with a JSON body of `size` bytes, streamed without a Content-Length;
    `huge_total` serves the real answer with its `total_count` replaced by `total`; `nested`
    answers 200 with arrays nested `depth` levels deep. A `status` fault with `retry_after` sends
    that text as its `Retry-After` (e.g. "²": digits to `str.isdigit`, not to `int`).
    Page faults hit only the offset pages of a full scan: offset page `page`, or any page but the
    first when None. `empty_page` serves it without products and `short_page` with its first third
    (the same `total_count` either way); `duplicate_sku` gives its first product the sku of the
    catalog's first product (another product, another id); `stale_page` serves the page as this
    same request was answered the first time the fault hit it (a cache serving an old copy).
    With `changes`, a page fault hits the incremental reads' keyset pages (changed since a time)
    instead of the full scan's, every one of them (`after` spares the first ones).
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
    location: str = ""
    size: int = 64 * 1024 * 1024
    total: int = 10**12
    depth: int = 100_000
    retry_after: str | None = None
    page: int | None = None
    changes: bool = False

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
        if self.kind == "redirect" and not (300 <= self.status < 400 and self.location):
            raise ValueError("Fault('redirect') needs a 3xx status and the location's origin")
        if self.size < 1 or self.total < 0 or self.depth < 1:
            raise ValueError("Fault.size and Fault.depth must be >= 1, Fault.total >= 0")


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
    # A Magento integration (System > Extensions > Integrations) of an Open Source, on-premises
    # or PaaS store, reached without the gateway: its access token works as a bearer token when
    # `integration_bearer` (2.4.4+ "standalone bearer tokens") is on, and all four sign OAuth 1.0a.
    # Magento's keys, tokens and secrets are 32 characters.
    integration_consumer_key: str = "syncdemulatorconsumerkey00000000"
    integration_consumer_secret: str = "syncdemulatorconsumersecret00000"  # noqa: S105 - fake
    integration_access_token: str = "syncdemulatoraccesstoken00000000"  # noqa: S105 - fake
    integration_access_token_secret: str = "syncdemulatortokensecret00000000"  # noqa: S105 - fake
    integration_bearer: bool = True
    # Store view codes served as /rest/<code>/V1/...; `all` is always there too, as in Magento.
    store_codes: tuple[str, ...] = ("default",)


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

"""An AmeriCommerce store: OAuth endpoints and `GET /api/v1/products`, behind the store's call limit.

Every API answer carries `X-AC-Call-Limit: used/max` for the current 10-second window; over it the
store answers 429 with `Retry-After`. GETs are served from a per-URL cache unless the request sends
`Cache-Control: no-cache`, so a client that does not ask for fresh data sees stale pages.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from datetime import datetime
from typing import Any

from aiohttp import web

from syncd.clock import Clock
from syncd.emulator.americommerce.oauth import AcAccessToken, AmeriCommerceOAuth, scopes_of
from syncd.emulator.americommerce.products import (
    ENGINE_FIELD,
    FIELD_KINDS,
    AmeriCommerceProductModel,
)
from syncd.emulator.americommerce.query import QueryError, parse_query
from syncd.emulator.catalog import Catalog
from syncd.emulator.config import AmeriCommerceConfig, FaultTarget
from syncd.emulator.cost import ServerTime
from syncd.emulator.limits import CallWindow
from syncd.emulator.platform import PlatformEmulator, seeded
from syncd.emulator.predicates import FieldKind, Getter, getter
from syncd.emulator.responses import dumps, json_response
from syncd.emulator.selection import SortKey, select
from syncd.emulator.timefmt import retry_after

_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable",
}  # fmt: skip
_READ_SCOPES = frozenset({"read_catalog", "catalog"})
_FRESH = ("no-cache", "no-store", "max-age=0")
_API_FIELD = {engine: api for api, engine in ENGINE_FIELD.items()}


def api_error(status: int, details: str, headers: dict[str, str] | None = None) -> web.Response:
    """The API's error body: {status_code, message, details}."""
    body = {"status_code": status, "message": _REASONS.get(status, "Error"), "details": details}
    return json_response(status, body, headers)


class _ResponseCache:
    """Bodies of recent 200 answers by URL, for `seconds` of monotonic time, LRU-bounded."""

    def __init__(self, seconds: float, entries: int, clock: Clock) -> None:
        self._seconds = seconds
        self._entries = entries
        self._clock = clock
        self._store: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        hit = self._store.get(key)
        if hit is None or self._clock.monotonic() - hit[0] >= self._seconds:
            return None
        self._store.move_to_end(key)
        return hit[1]

    def put(self, key: str, body: bytes) -> None:
        if self._seconds <= 0 or self._entries <= 0:
            return
        self._store[key] = (self._clock.monotonic(), body)
        self._store.move_to_end(key)
        while len(self._store) > self._entries:
            self._store.popitem(last=False)

    def clear(self) -> None:
        self._store.clear()


class AmeriCommerceEmulator(PlatformEmulator):
    """The store's OAuth endpoints and product API."""

    def __init__(
        self,
        config: AmeriCommerceConfig,
        clock: Clock,
        seed: int,
        log_size: int,
        catalog_until: datetime | None = None,
    ) -> None:
        super().__init__(clock, seed, "americommerce", log_size, config.latency)
        self.server = ServerTime(config.cost)
        self.config = config
        self.catalog = Catalog(
            AmeriCommerceProductModel(seed, config.utc_offset_minutes),
            clock,
            config.products,
            seeded(seed, "americommerce:catalog"),
            catalog_until,
        )
        self.oauth = AmeriCommerceOAuth(config, clock, seeded(seed, "americommerce:tokens"))
        self.cache = _ResponseCache(
            config.response_cache_seconds, config.response_cache_entries, clock
        )
        self.window = CallWindow(
            config.call_limit,
            config.call_window,
            clock,
            other_calls=config.other_app_calls,
            rng=seeded(seed, "americommerce:other-app"),
        )
        self._token_windows: dict[str, CallWindow] = {}
        self._order_rng = seeded(seed, "americommerce:order")
        self.base_url = ""

    @property
    def issued_tokens(self) -> dict[str, AcAccessToken]:
        """Every access token issued through OAuth, by value."""
        return self.oauth.access_tokens

    def revoke_tokens(self, *, refresh_tokens: bool = False, static_tokens: bool = False) -> None:
        """Invalidate issued access tokens; optionally refresh tokens and admin-console tokens too."""
        self.oauth.revoke(refresh_tokens=refresh_tokens, static_tokens=static_tokens)

    def routes(self) -> list[web.RouteDef]:
        """OAuth (token target) and the products API (api target)."""
        listing = self.wrap("api", self._list)
        return [
            web.get("/api/oauth", self.wrap("token", self.oauth.authorize)),
            web.post("/api/oauth", self.wrap("token", self.oauth.desktop)),
            web.post("/api/oauth/access_token", self.wrap("token", self.oauth.access_token)),
            web.post("/api/oauth/refresh", self.wrap("token", self.oauth.refresh)),
            web.get("/api/v1/products", listing),
            web.get("/api/v1/products.json", listing),
            web.get("/api/v1/products/{id}", self.wrap("api", self._single)),
        ]

    def offset_page(self, request: web.Request) -> int | None:
        """`page` of an unfiltered, untrimmed listing sorted by id."""
        query = request.query
        if not request.path.startswith("/api/v1/products") or set(query) - {
            "page",
            "count",
            "sort",
        }:
            return None
        page = query.get("page", "1")
        return int(page) if query.get("sort") == "id" and page.isdigit() else None

    def changes_page(self, request: web.Request) -> bool:
        """A listing filtered on `updated_at` in (updated_at, id) order (the keyset of changes)."""
        query = request.query
        return (
            request.path.startswith("/api/v1/products")
            and "updated_at" in query
            and query.get("sort", "").startswith("updated_at")
        )

    def first_sku(self) -> str:
        """The item number of the catalog's first live product."""
        return self.catalog.sku_at(self.catalog.alive[0])

    def error_response(self, target: FaultTarget, status: int) -> web.Response:
        """An injected failure in the store's error format."""
        return api_error(status, "An error has occurred.")

    # -- the gate in front of every API call ---------------------------------------------------

    def _window_of(self, request: web.Request) -> CallWindow:
        """The call window this request counts in: the store's, or with `call_limit_per_token`
        its token's own (one emulator standing for many stores)."""
        if not self.config.call_limit_per_token:
            return self.window
        token = request.headers.get("X-AC-Auth-Token", "")
        window = self._token_windows.get(token)
        if window is None:
            cfg = self.config
            window = self._token_windows[token] = CallWindow(
                cfg.call_limit, cfg.call_window, self.clock
            )
        return window

    def _gate(self, request: web.Request) -> tuple[web.Response | None, dict[str, str]]:
        state = self._window_of(request).hit()
        headers = {"X-AC-Call-Limit": state.header}
        if not state.allowed:
            self.stats.rate_limited += 1
            wait = retry_after(state.reset_in, self.clock.now(), self.config.retry_after_format)
            details = "The API call limit for this store has been exceeded."
            return api_error(429, details, {**headers, "Retry-After": wait}), headers
        token = request.headers.get("X-AC-Auth-Token", "")
        if not token:
            self.stats.unauthorized += 1
            return api_error(401, "The X-AC-Auth-Token header is missing.", headers), headers
        status, scope = self.oauth.check(token)
        if status != "valid":
            if status == "expired":
                self.stats.expired_token_requests += 1
            self.stats.unauthorized += 1
            return api_error(401, f"The access token is {status}.", headers), headers
        if not scopes_of(scope) & _READ_SCOPES:
            return api_error(
                403, "The access token lacks the read_catalog scope.", headers
            ), headers
        return None, headers

    def _getter(self, field: str, kind: FieldKind) -> Getter:
        return getter(self.catalog, field, kind)

    def _sort_getter(self, field: str) -> Getter:
        column = _API_FIELD.get(field, field)
        return self._getter(field, FIELD_KINDS[column])

    # -- the product endpoints -----------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        refused, headers = self._gate(request)
        if refused is not None:
            return refused
        fresh = any(d in request.headers.get("Cache-Control", "").lower() for d in _FRESH)
        key = request.path_qs
        if not fresh:
            cached = self.cache.get(key)
            if cached is not None:
                self.stats.cache_hits += 1
                return json_response(200, cached, headers)
        response, items = self._render_list(request, headers)
        await self.server.page(items, len(self.catalog))
        if response.status == 200 and isinstance(response.body, bytes):
            self.cache.put(key, response.body)
        return response

    def _render_list(
        self, request: web.Request, headers: dict[str, str]
    ) -> tuple[web.Response, int]:
        """The page's answer, and how many products it holds."""
        cfg = self.config
        try:
            query = parse_query(request.query, self._getter, cfg.utc_offset_minutes)
        except QueryError as error:
            return api_error(400, str(error), headers), 0
        count = query.count
        if count < 1:
            return api_error(400, "The count parameter must be greater than 0", headers), 0
        if cfg.max_count is not None:
            count = min(count, cfg.max_count)
        rng = random.Random(self._order_rng.getrandbits(64))
        sort = query.sort or [SortKey("entity_id")]
        selection = select(self.catalog, query.clauses, sort, self._sort_getter, rng)
        total = selection.total
        start = (query.page - 1) * count
        if query.page < 1 or (start >= total and query.page != 1):
            return api_error(404, "The requested page does not exist.", headers), 0
        slots = selection.window(start, start + count, rng if cfg.unstable_ties else None)
        parts = [b'"total_count":' + str(total).encode()]
        if start + count < total:
            parts.append(b'"next_page":' + dumps(self._page_url(request, query.page + 1)))
        if query.page > 1:
            parts.append(b'"previous_page":' + dumps(self._page_url(request, query.page - 1)))
        parts.append(b'"products":[' + b",".join(self._products(slots, query.fields)) + b"]")
        return json_response(200, b"{" + b",".join(parts) + b"}", headers), len(slots)

    def _products(self, slots: list[int], fields: list[str] | None) -> list[bytes]:
        if fields is None:
            return [self.catalog.render_bytes(s) for s in slots]
        wanted = set(fields)
        out: list[bytes] = []
        for slot in slots:
            product = self.catalog.render(slot)
            out.append(dumps({k: v for k, v in product.items() if k in wanted}))
        return out

    def _page_url(self, request: web.Request, page: int) -> str:
        query: dict[str, Any] = dict(request.query)
        query["page"] = str(page)
        url = request.url.with_query(query)
        if self.base_url:
            return self.base_url + url.raw_path_qs
        return str(url)

    async def _single(self, request: web.Request) -> web.Response:
        refused, headers = self._gate(request)
        if refused is not None:
            return refused
        raw = request.match_info["id"]
        slot = int(raw) - 1 if raw.isdigit() else -1
        if not self.catalog.exists(slot):
            return api_error(404, "The requested resource does not exist.", headers)
        return json_response(200, self.catalog.render_bytes(slot), headers)

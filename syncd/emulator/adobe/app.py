"""Adobe Commerce: ACCS behind the Adobe I/O gateway (IMS tokens), or a Magento 2 store reached
directly with an integration's credentials, both serving `GET /rest[/<store>]/V1/products`.

One emulator plays both. A request is the direct store's when it is signed with OAuth 1.0a, or
carries a bearer token without `x-api-key` that is not an IMS token; every other request went
through the gateway. Gateway checks first: api key (403), throttle (429), and with the gateway's
error style its own token check (401013). Then Magento's: the store code (an unknown one leaves
the path unrouted, 404), the credential (401, or OAuth's 400s), the search criteria (400).
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from typing import Any

from aiohttp import web

from syncd.clock import Clock
from syncd.emulator.adobe.ims import ImsService, IssuedToken
from syncd.emulator.adobe.magento_integration import UNAUTHORIZED, IntegrationAuth
from syncd.emulator.adobe.products import FIELD_KINDS, AdobeProductModel
from syncd.emulator.adobe.search_criteria import CriteriaError, parse_criteria
from syncd.emulator.catalog import Catalog
from syncd.emulator.config import AdobeConfig, FaultTarget
from syncd.emulator.cost import ServerTime
from syncd.emulator.fields import FieldTree, parse_fields, project
from syncd.emulator.limits import TokenBucket
from syncd.emulator.platform import PlatformEmulator, seeded
from syncd.emulator.predicates import FieldKind, Getter, getter
from syncd.emulator.responses import dumps, json_response
from syncd.emulator.selection import select
from syncd.emulator.timefmt import magento_format, retry_after

_GATEWAY_INVALID_TOKEN = {"error_code": "401013", "message": "Oauth token is not valid"}
_NO_SUCH_PRODUCT = {
    "message": "The product that was requested doesn't exist. Verify the product and try again."
}
# Webapi\Controller\PathProcessor keeps an unknown store code in the path, which no route matches.
_NO_ROUTE = {"message": "Request does not match any route."}
# Item keys the catalog can render without building the whole product.
_CHEAP_ITEM_KEYS = ("id", "sku", "created_at", "updated_at")


class AdobeEmulator(PlatformEmulator):
    """IMS plus a Magento product catalog, with the gateway's checks in front."""

    def __init__(
        self,
        config: AdobeConfig,
        clock: Clock,
        seed: int,
        log_size: int,
        catalog_until: datetime | None = None,
    ) -> None:
        super().__init__(clock, seed, "adobe", log_size, config.latency)
        self.server = ServerTime(config.cost)
        self.config = config
        self.catalog = Catalog(
            AdobeProductModel(seed),
            clock,
            config.products,
            seeded(seed, "adobe:catalog"),
            catalog_until,
        )
        self.ims = ImsService(config, clock, seeded(seed, "adobe:tokens"))
        self.integration = IntegrationAuth(config, clock)
        limit = config.rate_limit
        self._bucket = TokenBucket(limit.rate, limit.burst, clock) if limit else None
        self._order_rng = seeded(seed, "adobe:order")

    @property
    def issued_tokens(self) -> dict[str, IssuedToken]:
        """Every access token minted, by value."""
        return self.ims.tokens

    def revoke_tokens(self) -> None:
        """Invalidate every issued token: the next API call with one answers 401."""
        self.ims.revoke_all()

    def set_client_disabled(self, disabled: bool) -> None:
        """Make the token endpoint refuse the configured credentials with `invalid_client`."""
        self.ims.client_disabled = disabled

    def set_integration_revoked(self, revoked: bool) -> None:
        """Revoke the integration's access token (re-authorised or deactivated in the admin):
        bearer calls become guests' (401), signed ones "Access token has been revoked" (401)."""
        self.integration.revoked = revoked

    def routes(self) -> list[web.RouteDef]:
        """IMS and the product endpoints (with and without a store code)."""
        listing = self.wrap("api", self._list)
        single = self.wrap("api", self._single)
        return [
            web.post("/ims/token/v3", self.wrap("token", self.ims.token)),
            web.get("/rest/V1/products", listing),
            web.get("/rest/{store}/V1/products", listing),
            web.get("/rest/V1/products/{sku}", single),
            web.get("/rest/{store}/V1/products/{sku}", single),
        ]

    def offset_page(self, request: web.Request) -> int | None:
        """`searchCriteria[currentPage]` of an unfiltered, untrimmed listing by entity_id."""
        query = request.query
        if (
            not request.path.endswith("/V1/products")
            or "fields" in query
            or query.get("searchCriteria[sortOrders][0][field]") != "entity_id"
            or any(key.startswith("searchCriteria[filter_groups]") for key in query)
        ):
            return None
        page = query.get("searchCriteria[currentPage]", "1")
        return int(page) if page.isdigit() else None

    def changes_page(self, request: web.Request) -> bool:
        """A listing whose first filter is on `updated_at` (syncd's keyset of changes)."""
        query = request.query
        return (
            request.path.endswith("/V1/products")
            and "fields" not in query
            and query.get("searchCriteria[filter_groups][0][filters][0][field]") == "updated_at"
        )

    def first_sku(self) -> str:
        """The sku of the catalog's first live product."""
        return self.catalog.sku_at(self.catalog.alive[0])

    def error_response(self, target: FaultTarget, status: int) -> web.Response:
        """An injected failure in the platform's own words."""
        if target == "token":
            return json_response(
                status, {"error": "server_error", "error_description": "temporarily unavailable"}
            )
        if status == 429:
            return self._throttled(1.0)
        return json_response(status, {"message": f"Service unavailable (HTTP {status})."})

    # -- gateway and authorization -------------------------------------------------------------

    def _throttled(self, wait: float) -> web.Response:
        self.stats.rate_limited += 1
        header = retry_after(wait, self.clock.now(), self.config.retry_after_format)
        return json_response(
            429,
            {"error_code": "429050", "message": "Too many requests"},
            {"Retry-After": header},
        )

    def _gate(self, request: web.Request) -> web.Response | None:
        """Everything in front of the catalog; None when the request may proceed."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        direct = scheme == "oauth" or (
            scheme == "bearer"
            and "x-api-key" not in request.headers
            and value not in self.ims.tokens
        )
        if not direct:
            api_key = request.headers.get("x-api-key")
            if not api_key:
                return json_response(
                    403, {"error_code": "403000", "message": "Api Key is required"}
                )
            if api_key != self.config.client_id:
                return json_response(403, {"error_code": "403003", "message": "Api Key is invalid"})
        if self._bucket is not None:
            wait = self._bucket.take()
            if wait is not None:
                return self._throttled(wait)
        state = self.ims.state(value) if scheme == "bearer" else "unknown"
        if not direct and self.config.auth_error_style == "gateway" and state != "valid":
            return self._unauthorized(state, _GATEWAY_INVALID_TOKEN)
        store = request.match_info.get("store")
        if store is not None and store != "all" and store not in self.config.store_codes:
            return json_response(404, _NO_ROUTE)
        if direct:
            refused = (
                self.integration.oauth(request, request.headers["Authorization"])
                if scheme == "oauth"
                else self.integration.bearer(value)
            )
            if refused is not None:
                self.stats.unauthorized += 1
            return refused
        if state != "valid" or request.headers.get("x-gw-ims-org-id") != self.config.org_id:
            return self._unauthorized(state, UNAUTHORIZED)
        return None

    def _unauthorized(self, state: str, body: dict[str, Any]) -> web.Response:
        if state == "expired":
            self.stats.expired_token_requests += 1
        self.stats.unauthorized += 1
        return json_response(401, body)

    # -- the product endpoints -----------------------------------------------------------------

    def _getter(self, field: str, kind: FieldKind) -> Getter:
        return getter(self.catalog, field, kind)

    async def _list(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        cfg = self.config
        try:
            criteria = parse_criteria(
                request.query,
                self._getter,
                cfg.default_page_size if cfg.page_size_cap is not None else None,
            )
        except CriteriaError as error:
            return json_response(400, error.body)
        size, cap = criteria.page_size, cfg.page_size_cap
        if cap is not None and size is not None and size > cap:
            if not cfg.page_size_cap_silent:
                return json_response(
                    400,
                    {
                        "message": "Maximum SearchCriteria pageSize is %max",
                        "parameters": {"max": cap},
                    },
                )
            # Clamped before paging, so offsets are counted in pages of the cap too.
            size = criteria.page_size = criteria.echo["page_size"] = cap
        rng = random.Random(self._order_rng.getrandbits(64))
        selection = select(
            self.catalog,
            criteria.clauses,
            criteria.sort,
            lambda f: self._getter(f, FIELD_KINDS[f]),
            rng,
        )
        total = selection.total
        if not size:
            start, stop = 0, total
        else:
            if size < 0:
                size = 1  # Zend's limitPage() turns a non-positive row count into 1.
            page = max(1, criteria.current_page or 1)
            if cfg.past_end == "repeat" and total and (page - 1) * size >= total:
                page = math.ceil(total / size)
            start, stop = (page - 1) * size, page * size
        slots = selection.window(start, stop, rng if cfg.unstable_ties else None)
        await self.server.page(len(slots), len(self.catalog))
        tree = parse_fields(request.query.get("fields", ""))
        return json_response(200, self._assemble(slots, criteria.echo, total, tree))

    def _assemble(
        self, slots: list[int], echo: dict[str, Any], total: int, tree: FieldTree | None
    ) -> bytes:
        """The search result bytes, built from each product's cached JSON where possible."""
        parts: list[bytes] = []
        if tree is None or "items" in tree:
            item_tree = None if tree is None else tree["items"]
            parts.append(b'"items":[' + b",".join(self._items(slots, item_tree)) + b"]")
        if tree is None or "search_criteria" in tree:
            sub = None if tree is None else tree["search_criteria"]
            parts.append(b'"search_criteria":' + dumps(project(echo, sub)))
        if tree is None or "total_count" in tree:
            parts.append(b'"total_count":' + str(total).encode())
        if not parts:
            return b"[]"
        return b"{" + b",".join(parts) + b"}"

    def _items(self, slots: list[int], tree: FieldTree | None) -> list[bytes]:
        catalog = self.catalog
        if tree is None:
            return [catalog.render_bytes(s) for s in slots]
        if all(sub is None for sub in tree.values()) and set(tree) <= set(_CHEAP_ITEM_KEYS):
            keys = [k for k in _CHEAP_ITEM_KEYS if k in tree]
            return [dumps(self._cheap_item(s, keys)) for s in slots]
        return [dumps(project(catalog.render(s), tree)) for s in slots]

    def _cheap_item(self, slot: int, keys: list[str]) -> dict[str, Any]:
        row = self.catalog.row(slot)
        out: dict[str, Any] = {}
        for key in keys:
            if key == "id":
                out[key] = row.entity_id
            elif key == "sku":
                out[key] = row.sku
            else:
                out[key] = magento_format(row.created_ms if key == "created_at" else row.updated_ms)
        return out

    async def _single(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        slot = self.catalog.slot_of(request.match_info["sku"])
        if slot is None:
            return json_response(404, _NO_SUCH_PRODUCT)
        tree = parse_fields(request.query.get("fields", ""))
        if tree is None:
            return json_response(200, self.catalog.render_bytes(slot))
        return json_response(200, project(self.catalog.render(slot), tree))

"""What every emulated platform does around its handlers: latency, counting, logging and faults."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web

from syncd.clock import Clock
from syncd.emulator.config import Fault, FaultTarget
from syncd.emulator.faults import PAGE_FAULTS, FaultInjector
from syncd.emulator.hostile import HOSTILE_KINDS, hostile_response
from syncd.emulator.responses import dumps, garbage_response, html_error_page, json_response
from syncd.emulator.stats import Stats

Handler = Callable[[web.Request], Awaitable[web.Response]]
Served = Callable[[web.Request], Awaitable[web.StreamResponse]]


def seeded(seed: int, purpose: str) -> random.Random:
    """An RNG of its own per purpose, so one stream's use never shifts another's values."""
    return random.Random(f"{seed}:{purpose}")


class PlatformEmulator:
    """Base of `AdobeEmulator` and `AmeriCommerceEmulator`."""

    def __init__(self, clock: Clock, seed: int, name: str, log_size: int, latency: float) -> None:
        self.clock = clock
        self.stats = Stats(log_size)
        self.faults = FaultInjector(seeded(seed, f"{name}:faults"), clock)
        self._latency = latency
        # Requests served per connection, to tell a kept-alive connection's later requests apart.
        self._served: weakref.WeakKeyDictionary[asyncio.BaseTransport, int] = (
            weakref.WeakKeyDictionary()
        )
        self._before: list[tuple[int, Callable[[], object]]] = []
        # What `stale_page` faults serve again: (fault, path and query) -> (headers, body).
        self._stale: dict[tuple[int, str], tuple[dict[str, str], bytes]] = {}

    def routes(self) -> list[web.RouteDef]:
        """The routes this platform serves."""
        raise NotImplementedError

    def error_response(self, target: FaultTarget, status: int) -> web.Response:
        """The platform's own JSON error for an injected `status` fault."""
        raise NotImplementedError

    def offset_page(self, request: web.Request) -> int | None:
        """The offset page of a full scan `request` asks for; None if it is no such request
        (only those can be hit by page faults)."""
        return None

    def changes_page(self, request: web.Request) -> bool:
        """Whether `request` asks for a keyset page of an incremental read (products changed
        since a time); those can be hit by page faults armed with `changes`."""
        return False

    def first_sku(self) -> str:
        """The sku of the catalog's first product (what `duplicate_sku` hands another one)."""
        raise NotImplementedError

    def before_request(self, n: int, action: Callable[[], object]) -> None:
        """Run `action` just before the `n`-th API request from now (1: the next) is handled, so
        a test can change the catalog at an exact point of a run instead of racing it. Counted on
        `stats.requests`: reset the stats before, not after."""
        if n < 1:
            raise ValueError("before_request needs n >= 1")
        self._before.append((self.stats.requests + n, action))

    def wrap(self, target: FaultTarget, handler: Handler) -> Served:
        """`handler` behind latency, counters, the request log and fault injection."""

        async def serve(request: web.Request) -> web.StreamResponse:
            began = self.clock.monotonic()
            if self._latency > 0:
                await asyncio.sleep(self._latency)
            if target == "api":
                self.stats.requests += 1
                self._run_before(self.stats.requests)
            else:
                self.stats.token_requests += 1
            fault = self.faults.draw(
                target,
                reused=self._count_on_connection(request) > 1,
                page=self.offset_page(request) if target == "api" else None,
                changes=target == "api" and self.changes_page(request),
            )
            response: web.StreamResponse
            if fault is None:
                response = await handler(request)
                status = response.status
            else:
                self.stats.faults_injected += 1
                response, status = await self._inject(fault, target, request, handler)
            self.stats.record(
                request.method,
                request.path,
                dict(request.query),
                status,
                self.clock.monotonic(),
                began,
            )
            return response

        return serve

    async def _page_fault(
        self, fault: Fault, request: web.Request, handler: Handler
    ) -> tuple[web.Response, int]:
        """A full-scan page as a broken cache or proxy serves it (see `Fault`)."""
        if fault.kind == "stale_page":
            key = (id(fault), request.path_qs)
            kept = self._stale.get(key)
            if kept is not None:
                return web.Response(status=200, body=kept[1], headers=kept[0]), 200
        response = await handler(request)
        body = response.body if isinstance(response.body, bytes) else b""
        if response.status != 200:
            return response, response.status
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        if fault.kind == "stale_page":
            self._stale[key] = (headers, body)
            return response, 200
        data = json.loads(body)
        items = data["items" if "items" in data else "products"]
        if fault.kind == "empty_page":
            items.clear()
        elif fault.kind == "short_page":
            del items[max(1, len(items) // 3) :]
        elif items:  # duplicate_sku
            field = "sku" if "sku" in items[0] else "item_number"
            items[0][field] = self.first_sku()
        return web.Response(status=200, body=dumps(data), headers=headers), 200

    def _run_before(self, number: int) -> None:
        due = [action for at, action in self._before if at == number]
        self._before = [(at, action) for at, action in self._before if at > number]
        for action in due:
            action()

    def _count_on_connection(self, request: web.Request) -> int:
        """How many requests this request's connection has carried, this one included."""
        transport = request.transport
        if transport is None:
            return 1
        count = self._served.get(transport, 0) + 1
        self._served[transport] = count
        return count

    async def _inject(
        self, fault: Fault, target: FaultTarget, request: web.Request, handler: Handler
    ) -> tuple[web.StreamResponse, int]:
        if fault.kind in HOSTILE_KINDS:
            hostile = await hostile_response(fault, request, handler)
            return hostile, hostile.status
        if fault.kind == "echo":
            response = await echo_response(request, fault.status, fault.body or "invalid_request")
            return response, response.status
        if fault.kind in PAGE_FAULTS:
            return await self._page_fault(fault, request, handler)
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            response = await handler(request)
            return response, response.status
        if fault.kind == "status":
            response = self.error_response(target, fault.status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            elif fault.status in (429, 503) and "Retry-After" not in response.headers:
                response.headers["Retry-After"] = "1"
            return response, response.status
        if fault.kind == "html":
            response = html_error_page(fault.status)
            return response, response.status
        if fault.kind == "malformed":
            return garbage_response(), 200
        if fault.kind == "json":
            return web.Response(status=200, text=fault.body, content_type="application/json"), 200
        if fault.kind == "truncated":
            full = await handler(request)
            body = full.body if isinstance(full.body, bytes) else b""
            cut = web.Response(
                status=full.status,
                body=body[: max(1, len(body) // 2)],
                headers={"Content-Type": full.headers.get("Content-Type", "application/json")},
            )
            return cut, full.status
        transport = request.transport
        if fault.kind == "reset":
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if transport is not None:
                transport.abort()
            return web.Response(status=500), 0
        # disconnect: drop the connection without a status line.
        if transport is not None:
            transport.close()
        return web.Response(status=500), 0


# -- the echo fault ---------------------------------------------------------------------------------

ECHOED_HEADERS = ("Authorization", "X-AC-Auth-Token", "x-api-key", "x-gw-ims-org-id", "Cookie")
"""The request headers an echoing error body quotes (those that carry credentials)."""


async def echo_response(request: web.Request, status: int, error: str) -> web.Response:
    """An error answer (`error` its OAuth error code) quoting everything the request carried: its
    fields first (a token request's secret), then the credential headers, then the query."""
    fields: dict[str, str] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        fields = {k: str(v) for k, v in (await request.post()).items()}
    elif request.can_read_body:
        try:
            data = await request.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            fields = {str(k): str(v) for k, v in data.items()}
    parts = [f"{name}={value}" for name, value in fields.items()]
    parts += [f"{h}: {request.headers[h]}" for h in ECHOED_HEADERS if h in request.headers]
    parts += [f"{name}={value}" for name, value in request.query.items()]
    text = "request rejected; it carried " + "; ".join(parts)
    body = {
        "error": error,
        "error_description": text,
        "message": text,
        "details": text,
        "status_code": status,
    }
    return json_response(status, body)

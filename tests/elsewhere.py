"""A second loopback origin that records every request it receives: where a hostile redirect
points. It answers like a willing impostor (a token, a page of products), so a client that
followed the redirect would be seen using what it got."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived: everything a credential could travel in."""

    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Elsewhere:
    """Serves on 127.0.0.1 (a free port) while entered; `received` lists every request."""

    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def _any(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.method, request.path_qs, dict(request.headers), body))
        return web.json_response(
            {
                "access_token": "impostor-token",
                "expires_in": 86399,
                "expires": 3600,
                "refresh_token": "impostor-refresh",
                "items": [{"id": 1, "sku": "IMPOSTOR", "name": "not yours"}],
                "products": [{"id": 1, "item_number": "IMPOSTOR", "item_name": "not yours"}],
                "total_count": 1,
            }
        )

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

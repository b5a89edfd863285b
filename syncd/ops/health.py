"""The optional HTTP listener: `/healthz` (the loop answers), `/readyz` (fit to serve), `/metrics`.

Off by default and on loopback by default (see `HealthSettings`): nothing here authenticates, and
nothing here reveals a secret. `check` is the client side, used by `syncd healthcheck`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
from aiohttp import web

from syncd.config import HealthSettings
from syncd.errors import ConfigError, SyncdError
from syncd.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Check:
    """The answer to one probe: 200 if `ok`, else 503, with `detail` as the JSON body."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Probe(Protocol):
    """What the listener asks the daemon."""

    def liveness(self) -> Check:
        """Is the daemon's loop running and scheduling?"""
        ...

    async def readiness(self) -> Check:
        """Is the store open and every source neither waiting for re-auth nor stale?"""
        ...

    async def metrics(self) -> tuple[bytes, str]:
        """The Prometheus exposition and its content type."""
        ...


class HealthServer:
    """Serves a `Probe` over HTTP; use as `async with HealthServer(settings, probe) as server:`."""

    def __init__(self, settings: HealthSettings, probe: Probe, *, timeout: float = 10.0) -> None:
        self._settings = settings
        self._probe = probe
        self._timeout = timeout
        self._runner: web.AppRunner | None = None
        self.port = settings.port

    async def __aenter__(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("HealthServer is already running; create a new one instead")
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        # No access log: a probe every few seconds would drown the events operators alert on.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self._settings.host, self._settings.port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                [f"health.port: cannot listen on {host}:{port}: {exc.strerror or exc}"]
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("health.listening", host=host, port=self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return _answer(self._probe.liveness())

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self._timeout):
                return _answer(await self._probe.readiness())
        except TimeoutError:
            return _answer(Check(False, {"ready": False, "error": "readiness check timed out"}))

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self._timeout):
                body, content_type = await self._probe.metrics()
        except (TimeoutError, SyncdError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            return web.Response(status=503, text=f"metrics unavailable: {reason}\n")
        return web.Response(body=body, headers={"Content-Type": content_type})


def _answer(check: Check) -> web.Response:
    return web.Response(
        status=200 if check.ok else 503,
        text=json.dumps(check.detail, default=str, sort_keys=True),
        content_type="application/json",
    )


def probe_url(settings: HealthSettings, path: str) -> str:
    """Where a local client reaches `path` (a wildcard listen address is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104 - mapped away
        settings.host, settings.host
    )
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}{path}"


async def check(url: str) -> tuple[bool, str]:
    """GET `url`: (True, summary) on 200; (False, one line saying why) otherwise.

    Bound it with `asyncio.timeout()`: a hung daemon never answers.
    """
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientError as exc:
        return False, f"{url}: {exc.__class__.__name__}: {exc}"
    summary = " ".join(text.split())[:300]
    return response.status == 200, f"{url}: HTTP {response.status} {summary}"

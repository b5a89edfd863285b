"""The emulator process: both platforms on one loopback aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from syncd.clock import Clock, SystemClock
from syncd.emulator.adobe.app import AdobeEmulator
from syncd.emulator.americommerce.app import AmeriCommerceEmulator
from syncd.emulator.config import EmulatorConfig

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class Emulator:
    """Serves Adobe (IMS + Commerce REST) and AmeriCommerce on 127.0.0.1 while entered."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        clock: Clock | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"the emulator binds to loopback only, not {host!r}")
        self.config = config or EmulatorConfig()
        self.clock: Clock = clock or SystemClock()
        cfg = self.config
        self.adobe = AdobeEmulator(cfg.adobe, self.clock, cfg.seed, cfg.log_size, cfg.catalog_until)
        self.americommerce = AmeriCommerceEmulator(
            cfg.americommerce, self.clock, cfg.seed, cfg.log_size, cfg.catalog_until
        )
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` once started."""
        if self._url is None:
            raise RuntimeError("the emulator is not running: use `async with Emulator(...)` first")
        return self._url

    @property
    def ims_token_url(self) -> str:
        """Where the IMS client_credentials grant is posted."""
        return f"{self.url}/ims/token/v3"

    def app(self) -> web.Application:
        """A fresh application with both platforms' routes."""
        app = web.Application(client_max_size=1 << 20)
        app.add_routes(self.adobe.routes())
        app.add_routes(self.americommerce.routes())
        return app

    async def start(self) -> None:
        """Bind and start serving."""
        if self._closed:
            raise RuntimeError("this Emulator was closed; create a new one to serve again")
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self._runner = runner
        self._url = f"http://{shown}:{port}"
        self.americommerce.base_url = self._url

    async def close(self) -> None:
        """Stop serving and release the port."""
        runner, self._runner = self._runner, None
        self._closed = True
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock | None = None,
    *,
    ready: Callable[[Emulator], None] | None = None,
) -> None:
    """Run an emulator until cancelled; `ready` receives it once it listens (e.g. to print its url)."""
    async with Emulator(config, clock, host=host, port=port) as emulator:
        if ready is not None:
            ready(emulator)
        await asyncio.Event().wait()

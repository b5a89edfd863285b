"""The web flow's one-shot listener: an HTTP server on the loopback redirect URL, ended by its first callback.

The store sends the operator's browser back to `redirect_url` with `auth_id` and `code` (or with
`error`, `error_reason` and `error_description`). Only a loopback, plain-HTTP redirect can land
here: the listener never binds a public interface.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from html import escape
from types import TracebackType
from typing import Self
from urllib.parse import unquote, urlsplit

from aiohttp import web

from syncd.clock import Clock, SystemClock
from syncd.errors import AuthError, ConfigError

_LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class Callback:
    """The handshake the store sent back: `auth_id` names it, `code` is signed in the exchange."""

    auth_id: str
    code: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    path: str


def loopback_target(redirect_url: str) -> tuple[str, int, str]:
    """(host, port, path) to listen on for `redirect_url`; ConfigError unless it is http:// on loopback."""
    why = "the web flow listens for it on this machine, so it must be http:// on 127.0.0.1, ::1 or localhost"
    try:
        parts = urlsplit(redirect_url)
        port = parts.port
    except ValueError:
        raise ConfigError([f"auth.redirect_url: {redirect_url!r} is not a URL: {why}"]) from None
    host = parts.hostname or ""
    if parts.scheme != "http" or not host or not _is_loopback(host):
        raise ConfigError([f"auth.redirect_url: {redirect_url!r} cannot be used: {why}"])
    if port == 0:
        raise ConfigError([f"auth.redirect_url: {redirect_url!r} needs a real port, not 0"])
    return host, port or 80, unquote(parts.path) or "/"


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedirectListener:
    """Listens on the redirect URL while entered; `wait()` returns the first callback that arrives."""

    def __init__(
        self, redirect_url: str, *, clock: Clock | None = None, shutdown_timeout: float = 2.0
    ) -> None:
        host, port, path = loopback_target(redirect_url)
        self._url = redirect_url
        self._clock = clock or SystemClock()
        self._target = _Target(host, port, path)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._result: asyncio.Future[Callback] | None = None

    async def __aenter__(self) -> Self:
        if self._runner is not None or self._result is not None:
            raise RuntimeError("a RedirectListener serves one callback; create a new one")
        self._result = asyncio.get_running_loop().create_future()
        app = web.Application()
        # One catch-all route, compared by decoded path: a redirect path may hold characters the
        # router would read as a pattern, and browsers differ in what they percent-encode.
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._target.host, self._target.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise AuthError(
                f"cannot listen on {self._target.host}:{self._target.port} for the redirect to "
                f"{self._url}: {exc.strerror or exc}"
            ) from None
        self._runner = runner
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        result = self._result
        if result is not None and not result.done():
            result.cancel()
        elif result is not None and not result.cancelled():
            result.exception()  # retrieved: a refusal nobody waited for is not an asyncio warning

    async def wait(self, within: float) -> Callback:
        """The `auth_id`/`code` the store sent; AuthError for an `error` redirect or no redirect in time.

        The time limit runs on the injected clock, so a test's fake clock decides when it is up.
        """
        result = self._result
        if result is None or self._runner is None:
            raise RuntimeError("use 'async with RedirectListener(...)' before wait()")
        if not result.done():
            deadline = asyncio.ensure_future(self._clock.sleep(within))
            try:
                await asyncio.wait((result, deadline), return_when=asyncio.FIRST_COMPLETED)
            finally:
                deadline.cancel()
                await asyncio.gather(deadline, return_exceptions=True)
        if not result.done():
            raise AuthError(
                f"no redirect reached {self._url} within {within:g}s: open the authorisation URL "
                "in a browser logged in to the store's admin console, then run 'syncd auth' again"
            )
        return result.result()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != self._target.path:
            return _page(404, "Not the redirect URL syncd is waiting on.")
        result = self._result
        if result is None or result.done():
            return _page(410, "This authorisation has already been received; close this window.")
        query = request.query
        if query.get("error"):
            reason = query.get("error_reason") or "no reason given"
            description = query.get("error_description") or "no description"
            message = (
                f"the store refused the authorisation: {query['error']} ({reason}): {description}"
            )
            result.set_exception(AuthError(message[:500]))
            return _page(400, f"syncd: {message}")
        auth_id, code = query.get("auth_id"), query.get("code")
        if not auth_id or not code:
            # Not the store's redirect (a stray request): keep waiting for the real one.
            return _page(400, "syncd expected auth_id and code (or error) in this URL.")
        result.set_result(Callback(auth_id, code))
        return _page(200, "syncd received the authorisation; you can close this window.")


def _page(status: int, text: str) -> web.Response:
    body = f"<!doctype html><title>syncd</title><p>{escape(text)}</p>\n"
    return web.Response(
        status=status, text=body, content_type="text/html", headers={"Connection": "close"}
    )

"""The per-source HTTP client: concurrency limit, shared pause, rate limit, retries, auth on every call."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

import aiohttp
import structlog

from syncd import codec
from syncd.auth import AccessToken, RequestSigner, TokenCache, TokenProvider
from syncd.clock import Clock
from syncd.errors import (
    AuthError,
    HttpStatusError,
    RateLimitedError,
    ResponseError,
    RetryBudgetExhaustedError,
    ServerError,
    SourceError,
    TransportError,
)
from syncd.http.gate import PauseGate
from syncd.http.response import Response, error_text
from syncd.http.retry import (
    Attempts,
    Outcome,
    RetryPolicy,
    Verdict,
    ascii_int,
    parse_retry_after,
)
from syncd.http.stats import RequestStats
from syncd.http.throttle import Throttle
from syncd.logging import get_logger

log = get_logger(__name__)

# What a flaky network or a keep-alive race looks like from aiohttp; all safe to retry for GETs.
_TRANSIENT = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    TimeoutError,
)
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024


@functools.cache
def _signs(provider: type) -> bool:
    """Whether providers of this class sign each request (`RequestSigner`): asked per request,
    and an isinstance check against a Protocol walks its members every time."""
    return issubclass(provider, RequestSigner)


@dataclass(frozen=True, slots=True)
class SourceAuth:
    """A source's credential: the provider that mints tokens and the cache that shares them."""

    provider: TokenProvider
    cache: TokenCache
    source: str

    async def token(self) -> AccessToken:
        """A token fresh enough to send."""
        return await self.cache.get(self.provider, self.source)

    def headers(
        self, token: AccessToken, method: str, url: str, params: Mapping[str, str] | None
    ) -> dict[str, str]:
        """The headers that authenticate this request: signed per request where the provider
        signs (OAuth 1.0a), the token's own headers otherwise."""
        if _signs(type(self.provider)):
            return cast(RequestSigner, self.provider).request_headers(token, method, url, params)
        return self.provider.auth_headers(token)

    async def reject(self, token: AccessToken) -> None:
        """Report a 401 for `token`."""
        await self.cache.invalidate(self.provider, token, self.source)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the caller asked for it, carried unchanged through every attempt."""

    method: str
    url: str
    params: Mapping[str, str] | None = None
    data: Mapping[str, str] | None = None
    json_body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    accept: frozenset[int] = frozenset()
    expect_json: bool = True


class _Transient(Exception):
    """Internal: an attempt failed in a way worth retrying; carries the error to raise at the end,
    with the network fault behind it (if any) as that error's `__cause__`."""

    def __init__(self, error: TransportError, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self.error = error


class SourceClient:
    """Sends one source's requests through its limits; shared by all of that source's workers."""

    def __init__(
        self,
        *,
        name: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        rng: random.Random,
        policy: RetryPolicy,
        max_concurrency: int,
        timeout: aiohttp.ClientTimeout,
        auth: SourceAuth | None = None,
        headers: Mapping[str, str] | None = None,
        throttles: Sequence[Throttle] = (),
        is_source: bool = True,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.name = name
        self._max_body_size = max_body_size
        self._is_source = is_source
        self.gate = PauseGate(clock)
        self._session = session
        self._clock = clock
        self._rng = rng
        self._policy = policy
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._timeout = timeout
        self._auth = auth
        self._headers = dict(headers or {})
        self._throttles: tuple[Throttle, ...] = tuple(throttles)

    async def get_json(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        stats: RequestStats,
        headers: Mapping[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> Response:
        """GET and decode JSON; statuses in `accept` are returned as they are instead of raising."""
        return await self.request(
            "GET", url, params=params, stats=stats, headers=headers, accept=accept, expect_json=True
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        stats: RequestStats,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
        expect_json: bool = True,
        raise_for_status: bool = True,
    ) -> Response:
        """Send with retries: 429 pauses every worker, 5xx and network faults back off, 401 refreshes once."""
        request = Request(
            method,
            url,
            params=params,
            data=data,
            json_body=json_body,
            headers={**self._headers, **(headers or {})},
            accept=accept,
            expect_json=expect_json,
        )
        attempts = Attempts(started=self._clock.monotonic())
        reauthed = False
        stats.paced_by(self._throttles)
        while True:
            await self.gate.wait()
            try:
                response, token = await self._attempt(request, stats)
            except _Transient as transient:
                attempts = await self._after_failure(request, transient.error, attempts, stats)
                continue
            if response.status == 401 and token is not None and self._auth is not None:
                if reauthed:
                    raise AuthError(
                        f"{method} {url} was refused with HTTP 401 twice, even with a fresh token: "
                        f"{_message(response)}",
                        source=self.name,
                        status=401,
                    )
                reauthed = True
                await self._auth.reject(token)
                continue
            if raise_for_status and response.status >= 400 and response.status not in accept:
                raise HttpStatusError(
                    f"{method} {url} was refused with HTTP {response.status}: {_message(response)}",
                    url=url,
                    status=response.status,
                )
            return response

    async def _after_failure(
        self, request: Request, error: TransportError, attempts: Attempts, stats: RequestStats
    ) -> Attempts:
        """Apply the policy's decision on a failed attempt: pause or wait, then the request's
        state for the next attempt; or raise `error` (its cause kept) when the policy gives up."""
        if isinstance(error, RateLimitedError):
            outcome = Outcome(rate_limited=True, retry_after=error.retry_after)
        else:
            outcome = Outcome(budget_left=stats.may_retry(), jitter=self._rng.random())
        decision = self._policy.decide(attempts, outcome, self._clock.monotonic())
        if outcome.rate_limited:
            stats.rate_limited += 1
            self.gate.pause(decision.pause)  # the gate itself holds every worker for the pause
            log.warning(
                "http.rate_limited",
                source=self._about(),
                url=request.url,
                retry_after=round(decision.pause, 3),
            )
        if decision.verdict is Verdict.BUDGET:
            raise _budget_spent(stats, error) from error
        if not decision.retry:
            raise error from error.__cause__
        if decision.verdict is Verdict.BACKOFF:
            log.warning(
                "http.retry_scheduled",
                source=self._about(),
                url=request.url,
                attempt=decision.attempts.failures,
                delay=round(decision.delay, 3),
                reason=str(error),
            )
        stats.retries += 1
        if decision.delay:
            await self._clock.sleep(decision.delay)
        return decision.attempts

    def _about(self) -> str | None:
        """The source a log line is about: this client's own, or for a token endpoint's client
        (shared by the sources of that endpoint) the source of the run it is working for."""
        if self._is_source:
            return self.name
        bound = structlog.contextvars.get_contextvars().get("source")
        return bound if isinstance(bound, str) else None

    async def _attempt(
        self, request: Request, stats: RequestStats
    ) -> tuple[Response, AccessToken | None]:
        """One attempt, and the token it carried. The token is taken once the request has its
        slot and every throttle's admission: one taken before a call-limit wait could expire
        while the request queues, and would be refused (twice, with the one taken after a 401)."""
        async with self._semaphore:
            await self._admit()
            try:
                token = await self._auth.token() if self._auth else None
            except BaseException:
                for throttle in self._throttles:
                    throttle.release()
                raise
            sent = dict(request.headers)
            if token is not None and self._auth is not None:
                sent.update(self._auth.headers(token, request.method, request.url, request.params))
            answer: Response | None = None
            try:
                answer = await self._send(request, sent, stats)
            finally:
                for throttle in self._throttles:
                    throttle.observe(answer)
        return self._decode(request, answer), token

    async def _admit(self) -> None:
        """Wait until every throttle admits this request while the source's gate is open.

        A 429 may close the gate while a request waits in a throttle. Sending it when the gate
        reopens would release every such request at once, just as the store's bucket has
        refilled for the same pause: a burst that draws the next 429. So a request admitted while
        the gate is closed gives its places back and queues again, behind the new pace.
        """
        while True:
            await self.gate.wait()
            admitted: list[Throttle] = []
            try:
                for throttle in self._throttles:
                    await throttle.acquire()
                    admitted.append(throttle)
            except BaseException:
                for throttle in admitted:
                    throttle.release()
                raise
            if not self.gate.paused_for:
                return
            for throttle in admitted:
                throttle.release()

    async def _send(
        self, request: Request, headers: Mapping[str, str], stats: RequestStats
    ) -> Response:
        """One attempt on the wire; network faults become `_Transient`, latency goes to `stats`."""
        method, url = request.method, request.url
        sent = self._clock.monotonic()
        try:
            async with self._session.request(
                method,
                url,
                params=request.params,
                data=request.data,
                json=request.json_body,
                headers=dict(headers),
                timeout=self._timeout,
                # A redirect is refused in `_decode`: followed, it would carry the credentials
                # (a token endpoint's form, X-AC-Auth-Token, x-api-key) to another host.
                allow_redirects=False,
            ) as raw:
                body = await self._read_capped(method, url, raw)
                return Response(raw.status, raw.headers, raw.content_type, body)
        except TimeoutError as exc:
            raise _Transient(
                TransportError(f"{method} {url} timed out after {self._timeout.total}s", url=url),
                cause=exc,
            ) from exc
        except _TRANSIENT as exc:
            raise _Transient(
                TransportError(
                    f"{method} {url} failed: {type(exc).__name__}: {exc or 'no detail'}", url=url
                ),
                cause=exc,
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{method} {url} failed: {exc}", url=url) from exc
        finally:
            stats.observe(self._clock.monotonic() - sent)

    async def _read_capped(self, method: str, url: str, raw: aiohttp.ClientResponse) -> bytes:
        """The body, read in chunks and never past `max_body_size` (decompressed bytes count)."""
        cap = self._max_body_size
        announced = parse_content_length(raw.headers.get("Content-Length"))
        if announced is not None and announced > cap:
            raw.close()  # the connection, with the body still on it, cannot be reused
            raise _body_too_large(method, url, cap, f"Content-Length {announced}")
        # The chunks as they arrived, joined once: cut into fixed sizes and gathered in a
        # bytearray, a page's body was copied three times before it was parsed.
        chunks: list[bytes] = []
        size = 0
        async for chunk in raw.content.iter_any():
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raw.close()
                raise _body_too_large(method, url, cap, "streamed past it")
        return b"".join(chunks)

    def _decode(self, request: Request, response: Response) -> Response:
        """Classify an answer: 429 and 5xx are transient, JSON is parsed where it is expected."""
        method, url, status = request.method, request.url, response.status
        if 300 <= status < 400:
            raise TransportError(
                f"{method} {url} answered HTTP {status}, a redirect to "
                f"{redirect_origin(url, response.headers.get('Location'))}: not followed, so "
                "credentials go only where they are configured; configure the final address "
                "if the move is genuine",
                url=url,
                status=status,
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
            raise _Transient(
                RateLimitedError(
                    f"{method} {url} was rate limited (HTTP 429) until the retry budget ran out",
                    url=url,
                    status=429,
                    retry_after=retry_after,
                )
            )
        if status >= 500:
            raise _Transient(
                ServerError(
                    f"{method} {url} answered HTTP {status}: {_message(response)}",
                    url=url,
                    status=status,
                )
            )
        if request.expect_json and (200 <= status < 300 or status in request.accept):
            try:
                decoded = codec.loads(response.body)
            except codec.NestingError as exc:
                raise SourceError(
                    f"{method} {url} answered HTTP {status} with JSON {exc}; refused"
                ) from None
            except ValueError:
                if not 200 <= status < 300:
                    return response  # a refusal the caller reads by its status: not transient
                raise _Transient(
                    ResponseError(
                        f"{method} {url} answered HTTP {status} with {_describe_body(response)}, "
                        "not the JSON the API documents",
                        url=url,
                        status=status,
                    )
                ) from None
            return replace(response, data=decoded)
        return response


def redirect_origin(url: str, location: str | None) -> str:
    """Where a redirect points, as `scheme://host[:port]` only: a Location's path and query may
    carry anything (a token, a signature), so they are never repeated."""
    if not location:
        return "nowhere (no Location header)"
    try:
        target = urlsplit(urljoin(url, location.strip()))
        host, port = target.hostname, target.port
    except ValueError:
        return "an unreadable Location"
    if not host or target.scheme not in ("http", "https"):
        return "an unreadable Location"
    shown = f"[{host}]" if ":" in host else host
    return f"{target.scheme}://{shown}" + (f":{port}" if port is not None else "")


def parse_content_length(value: str | None) -> int | None:
    """`Content-Length` as bytes; None when absent or not plain ASCII digits (treated as absent)."""
    return ascii_int(value)


def _body_too_large(method: str, url: str, cap: int, how: str) -> ResponseError:
    return ResponseError(
        f"{method} {url} answered a body over max_body_size ({cap} bytes; {how}): not read "
        "further; raise max_body_size if the store's answers are really this large",
        url=url,
    )


def _budget_spent(stats: RequestStats, error: TransportError) -> RetryBudgetExhaustedError:
    budget = stats.budget.describe() if stats.budget else "none"
    return RetryBudgetExhaustedError(
        f"retry budget exhausted: {stats.failure_retries} retries after failures for "
        f"{stats.requests} requests (budget: {budget}); the API looks unhealthy, so the run "
        f"stops instead of adding load; last error: {error}",
        url=error.url,
        status=error.status,
    )


def _describe_body(response: Response) -> str:
    if "html" in response.content_type or response.body.lstrip()[:1] == b"<":
        return f"an HTML page ({response.content_type or 'no content type'})"
    if "json" in response.content_type:
        return f"a malformed or truncated JSON body ({len(response.body)} bytes)"
    return f"a {response.content_type or 'untyped'} body of {len(response.body)} bytes"


def _message(response: Response) -> str:
    """The platform's own error text (Magento `message`, IMS `error_description`, ...), shortened."""
    try:
        data = codec.loads(response.body)
    except ValueError:
        return _describe_body(response)
    text = error_text(data)
    if text is not None:
        return text[:300]
    return response.body[:200].decode("utf-8", errors="replace")

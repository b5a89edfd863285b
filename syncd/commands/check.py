"""`syncd check [SOURCE]`: the online check. Per source: a token (or the stored grant), one product,
the rate-limit headers, and one line saying ok or what is wrong and what to do.

It goes through the same source adapter, client and token cache as a sync, so every auth kind a
source can be configured with is checked the way a run would use it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

from syncd.auth import TokenCache
from syncd.clock import Clock, SystemClock
from syncd.commands.output import human_duration
from syncd.config import Settings, SourceSettings
from syncd.config.readiness import missing_secrets, store_problems
from syncd.errors import (
    AuthError,
    ConfigError,
    HttpStatusError,
    NeedsReauthError,
    RateLimitedError,
    SourceError,
    SyncdError,
    TransportError,
)
from syncd.http import ClientPool, RequestStats
from syncd.http.response import Response
from syncd.sources import Source
from syncd.sources.base import VerifiableSource
from syncd.store import Store
from syncd.store.factory import open_store
from syncd.wiring import build_source

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

RATE_HEADERS = ("x-ac-call-limit", "retry-after")
"""Rate-limit headers reported by name; any header with `ratelimit` in its name is reported too
(`RateLimit`, `RateLimit-Policy`, `X-RateLimit-Remaining`...)."""

CHECK_ATTEMPTS = 2
CHECK_DEADLINE = 30.0
"""A check answers within seconds: one retry, and no longer than this per request."""

TOKEN_GRANTS = ("issued", "refreshed", "reused")


@dataclass(slots=True)
class HeaderRecorder:
    """A throttle that never holds a request back and keeps the last answer's rate-limit headers."""

    headers: dict[str, str] = field(default_factory=dict)

    async def acquire(self) -> None:
        """Admit at once: the check only listens."""

    def observe(self, response: Response | None) -> None:
        """Keep the rate-limit headers of `response`."""
        if response is not None:
            self.headers = rate_headers(response.headers)

    def release(self) -> None:
        """Nothing was held."""


def rate_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit headers among `headers`, as sent."""
    return {
        name: value
        for name, value in headers.items()
        if name.lower() in RATE_HEADERS or "ratelimit" in name.lower()
    }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One source's line: `ok`, or `config` (fix the configuration) or `failed` (anything else)."""

    source: str
    outcome: str
    text: str

    def line(self) -> str:
        """What `syncd check` prints for this source."""
        label = {"ok": "ok", "config": "CONFIG ERROR", "failed": "FAILED"}[self.outcome]
        return f"{self.source}: {label}: {self.text}"


async def check_sources(
    args: argparse.Namespace, settings: Settings, *, clock: Clock | None = None
) -> int:
    """`syncd check [SOURCE]`: one line per source; exit 0 all ok, 1 some failed, 2 config."""
    if args.source:
        targets = [settings.source(args.source)]
    else:
        targets = [s for s in settings.sources if s.enabled]
        if not targets:
            raise ConfigError(["sources: no enabled [[sources]] entry to check"])
    problems = store_problems(settings.store.path)
    if problems:
        raise ConfigError(problems)
    clock = clock or SystemClock()
    # The check's own retry policy: it reports a broken store now instead of retrying for minutes.
    http = settings.http.model_copy(
        update={
            "max_attempts": min(settings.http.max_attempts, CHECK_ATTEMPTS),
            "retry_deadline": min(settings.http.retry_deadline, CHECK_DEADLINE),
        }
    )
    results: list[CheckResult] = []
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            open_store(settings.store, redactor=settings.redactor)
        )
        recorders: dict[str, HeaderRecorder] = {}
        pool = await stack.enter_async_context(
            ClientPool(
                http, clock, observer=lambda name: recorders.setdefault(name, HeaderRecorder())
            )
        )
        cache = await stack.enter_async_context(
            TokenCache(store, clock, redactor=settings.redactor)
        )
        for settings_of in targets:
            result = await check_source(settings_of, store, pool, cache, clock, recorders)
            print(result.line(), flush=True)
            results.append(result)
    outcomes = {r.outcome for r in results}
    if "config" in outcomes:
        return EXIT_CONFIG
    return EXIT_FAILED if "failed" in outcomes else EXIT_OK


async def check_source(
    settings: SourceSettings,
    store: Store,
    pool: ClientPool,
    cache: TokenCache,
    clock: Clock,
    recorders: Mapping[str, HeaderRecorder],
) -> CheckResult:
    """Check one source: its secrets, its stored grant, a token, one product, the rate limits."""
    name = settings.name
    unset = missing_secrets(settings)
    if unset:
        return CheckResult(name, "config", "; ".join(unset))
    state = await store.source_state(name)
    if state.needs_reauth:
        return CheckResult(
            name,
            "failed",
            f"needs re-authorisation ({state.reauth_reason}): run 'syncd auth {name}'",
        )
    started = clock.now()
    stats = RequestStats()
    try:
        source = build_source(settings, pool, cache, clock)
        total = await _one_product(source, stats, started)
    except ConfigError as exc:
        return CheckResult(name, "config", "; ".join(exc.problems))
    except SyncdError as exc:
        what, todo = _one_line(exc), advice(exc, settings)
        # A refused grant's message already names the command to run.
        return CheckResult(name, "failed", what if todo in what else f"{what}; {todo}")
    facts = [
        await _token_fact(store, name, started, clock.now()),
        f"{total} products",
        f"{round(stats.latencies[-1] * 1000)} ms" if stats.latencies else "",
        _limits_fact(recorders.get(name)),
    ]
    return CheckResult(name, "ok", ", ".join(fact for fact in facts if fact))


async def _one_product(source: Source, stats: RequestStats, now: datetime) -> int:
    """The catalog's size, from one request for one product (a first page where the source
    cannot ask for less)."""
    if isinstance(source, VerifiableSource):
        return (await source.probe(stats, now)).total
    pages = source.full_pages(stats)
    try:
        page = await anext(aiter(pages))
    except StopAsyncIteration:
        return 0
    finally:
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()
    return page.total_count if page.total_count is not None else len(page.records)


async def _token_fact(store: Store, name: str, since: datetime, now: datetime) -> str:
    """What the check did with the credential: the token it got, and until when it is good."""
    events = await store.token_events(name, since=since, limit=10, event=TOKEN_GRANTS)
    grants = await store.token_events(name, limit=1, event=TOKEN_GRANTS)
    if not grants:
        return "no token needed" if not events else ""
    grant = grants[0]
    how = f"token {events[0].event}" if events else "token cached"
    if grant.expires_at is None:
        return f"{how} (no expiry)"
    left = (grant.expires_at - now).total_seconds()
    return f"{how} (expires in {human_duration(max(0.0, left))})"


def _limits_fact(recorder: HeaderRecorder | None) -> str:
    if recorder is None or not recorder.headers:
        return "no rate-limit headers"
    return "limits " + " ".join(f"{k}: {v}" for k, v in recorder.headers.items())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def advice(exc: SyncdError, settings: SourceSettings) -> str:
    """What to do about `exc`, in a few words."""
    name = settings.name
    if isinstance(exc, NeedsReauthError):
        return f"run 'syncd auth {name}'"
    if isinstance(exc, AuthError):
        return "check the source's credentials (auth.*) and the token endpoint"
    if isinstance(exc, RateLimitedError):
        return "the store is rate limiting this client: try again later, or set a lower rate_limit"
    if isinstance(exc, HttpStatusError) and exc.status in (401, 403):
        return "the credential was refused: check its permissions (scopes, API access) on the store"
    if isinstance(exc, HttpStatusError) and exc.status == 404:
        return f"check base_url ({settings.base_url})"
    if isinstance(exc, TransportError):
        return f"check base_url ({settings.base_url}) and that the store is reachable"
    if isinstance(exc, SourceError):
        return "the store answered in a way syncd cannot use: check base_url and the API version"
    return "see the message"

"""What each CLI command does, given parsed arguments and validated settings."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from syncd.auth import AccessToken, TokenCache, fingerprint
from syncd.auth.ac_bootstrap import AmeriCommerceAuthorizer, UserLogin, install_grant
from syncd.auth.americommerce import AmeriCommerceTokenProvider
from syncd.clock import Clock, SystemClock
from syncd.config import (
    AdobeCommerceSourceSettings,
    AmeriCommerceSourceSettings,
    ImsAuthSettings,
    Settings,
    StoreSettings,
)
from syncd.daemon import Daemon, Runtime
from syncd.health import check, probe_url
from syncd.http import ClientPool
from syncd.notify import Notifier
from syncd.staleness import assess, limits
from syncd.store import SqliteStore, TokenEvent
from syncd.sync import SyncResult

TOKEN_GRANTS = ("issued", "refreshed", "reused")
ENV_AC_USERNAME = "SYNCD_AC_USERNAME"
ENV_AC_USER_KEY = "SYNCD_AC_USER_KEY"


class ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere (logs say enough there)."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._enabled = stream.isatty()

    def __call__(self, pages: int, expected: int | None, items: int) -> None:
        if not self._enabled:
            return
        if expected:
            width = 30
            filled = min(width, round(width * pages / expected))
            bar = "#" * filled + "-" * (width - filled)
            text = f"\r{self._label} [{bar}] {pages}/{expected} pages, {items} products"
        else:
            text = f"\r{self._label} {pages} pages, {items} products"
        self._stream.write(text)
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._enabled:
            self._stream.write("\n")


def print_result(result: SyncResult, out: TextIO, extra: dict[str, Any] | None = None) -> None:
    """A human summary of one run."""
    t = result.totals
    lines = [
        f"sync {result.source}: {result.status} in {result.duration:.2f}s ({result.kind} run "
        f"#{result.run_id})",
        f"  products   {t.items_seen} seen: {t.items_created} new, {t.items_updated} changed, "
        f"{t.items_unchanged} unchanged",
        f"  pages      {t.pages}",
        f"  requests   {t.requests} ({t.retries} retries, {t.rate_limited} rate limited)",
    ]
    if result.latency:
        lat = result.latency
        lines.append(
            f"  latency    p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, max {lat['max_ms']} ms"
        )
    if result.duration > 0 and t.items_seen:
        lines.append(f"  throughput {t.items_seen / result.duration:,.0f} products/s")
    for key, value in (extra or {}).items():
        lines.append(f"  {key:<10} {value}")
    if result.error:
        lines.append(f"  error      {result.error}")
    print("\n".join(lines), file=out)


async def run_daemon(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd run`: schedule every source until SIGTERM/SIGINT."""
    if not settings.sources:
        print("syncd: config error: sources: at least one [[sources]] entry is required",
              file=sys.stderr)  # fmt: skip
        return 2
    notifier = Notifier.from_environ(os.environ)
    async with Runtime(settings) as runtime, Daemon(runtime, notifier=notifier) as daemon:
        await daemon.wait()
    return 0


async def sync_now(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd sync SOURCE`: one run now; exit 0 on success."""
    settings.source(args.source)
    async with Runtime(settings) as runtime:
        state = await runtime.store.source_state(args.source)
        if state.needs_reauth:
            print(
                f"syncd: error: source {args.source!r} needs re-authorisation "
                f"({state.reauth_reason}); run 'syncd auth {args.source}'",
                file=sys.stderr,
            )
            return 1
        bar = ProgressBar(sys.stderr, args.source)
        try:
            result = await runtime.sync(args.source, "full" if args.full else None, progress=bar)
        finally:
            bar.close()
    print_result(result, sys.stdout)
    return 0 if result.ok else 1


STATUS_SCHEMA = 1
"""Version of the `status --json` shape (docs/MONITORING.md): keys are added, never renamed."""


async def show_status(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd status`: each source's last run, staleness, product count, token expiry and actions."""
    now = SystemClock().now()
    rows: list[dict[str, Any]] = []
    expiry: dict[str, str] = {}
    async with SqliteStore(settings.store.path, busy_timeout=settings.store.busy_timeout) as store:
        last = {run.source: run for run in await store.last_runs()}
        health = {h.source: h for h in await assess(store, limits(settings.sources, now), now)}
        for source in settings.sources:
            run = last.get(source.name)
            state = await store.source_state(source.name)
            events = await store.token_events(source.name, limit=20)
            grant = next((e for e in events if e.event in TOKEN_GRANTS), None)
            h = health.get(source.name)
            expiry[source.name] = _expiry_text(grant)
            rows.append(
                {
                    "source": source.name,
                    "kind": source.kind,
                    "enabled": source.enabled,
                    "schedule": source.schedule,
                    "products": await store.count_products(source.name),
                    "last_run": None
                    if run is None
                    else {
                        "id": run.id,
                        "kind": run.kind,
                        "status": run.status,
                        "started_at": run.started_at,
                        "finished_at": run.finished_at,
                        "error": run.error,
                        **asdict(run.totals),
                    },
                    "last_success_at": _iso(h.last_success_at) if h else None,
                    "age_s": round(h.age_s) if h and h.age_s is not None else None,
                    "stale_limit_s": round(h.limit_s) if h else None,
                    "stale": h.stale if h else None,
                    "token_expires_at": grant.expires_at.isoformat()
                    if grant and grant.expires_at
                    else None,
                    "needs_reauth": state.needs_reauth,
                    "reauth_reason": state.reauth_reason,
                    "action": f"run 'syncd auth {source.name}'" if state.needs_reauth else None,
                }
            )
    if args.json:
        document = {"schema": STATUS_SCHEMA, "generated_at": _iso(now), "sources": rows}
        print(json.dumps(document, indent=2))
        return 0
    if not rows:
        print("no sources configured")
    for row in rows:
        run = row["last_run"]
        head = f"{row['source']} ({row['kind']}): {row['products']} products"
        if run is None:
            print(f"{head}, never synced")
        else:
            print(
                f"{head}, last run #{run['id']} {run['status']} at {run['finished_at'] or '-'} "
                f"({run['items_seen']} seen, {run['items_created']} new, "
                f"{run['items_updated']} changed)"
            )
            if run["error"]:
                print(f"  error: {run['error']}")
        if row["last_success_at"]:
            stale = "  STALE" if row["stale"] else ""
            print(
                f"  last success: {row['last_success_at']} ({_human(row['age_s'])} ago, "
                f"stale after {_human(row['stale_limit_s'])}){stale}"
            )
        print(f"  token expires: {expiry[row['source']]}")
        if row["action"]:
            print(f"  ACTION NEEDED: {row['action']}")
            if row["reauth_reason"]:
                print(f"  reason: {row['reauth_reason']}")
    return 0


def _expiry_text(grant: TokenEvent | None) -> str:
    if grant is None:
        return "no token yet"
    return grant.expires_at.isoformat() if grant.expires_at else "never (or unknown)"


async def authorize_source(
    args: argparse.Namespace,
    settings: Settings,
    *,
    clock: Clock | None = None,
    stdin: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """`syncd auth SOURCE [--web]`: obtain an AmeriCommerce grant, store it, clear `needs_reauth`.

    The legacy scheme runs the desktop flow unless `--web` is given; the current scheme has only
    the web flow. The user API key is read once (prompt, $SYNCD_AC_USER_KEY or stdin) and dropped.
    """
    source = settings.source(args.source)
    if not isinstance(source, AmeriCommerceSourceSettings):
        return _usage(
            f"source {source.name!r} is {source.kind}: only americommerce sources have an "
            "authorisation step (IMS credentials are used as configured)"
        )
    auth, name, base_url = source.auth, source.name, str(source.base_url)
    clock = clock or SystemClock()
    web = args.web or auth.auth_scheme != "legacy"
    login: UserLogin | None = None
    if auth.static_token is None and not web:
        login, problem = read_login(stdin or sys.stdin, os.environ if env is None else env)
        if login is None:
            return _usage(problem)
    async with (
        SqliteStore(settings.store.path, busy_timeout=settings.store.busy_timeout) as store,
        ClientPool(settings.http, clock) as pool,
    ):
        provider = AmeriCommerceTokenProvider(auth, base_url, pool, clock, source=name)
        if auth.static_token is not None:
            how = "static admin-console token (from the configuration; it does not expire)"
            token = await provider.obtain(None)
        else:
            authorizer = AmeriCommerceAuthorizer(auth, base_url, pool, clock)
            if login is not None:
                how = f"{auth.auth_scheme} desktop flow, desktop_signature={auth.desktop_signature}"
                token = await authorizer.desktop(login)
            else:
                how = f"{auth.auth_scheme} web flow"
                token = await authorizer.web(within=args.timeout, show=_show_authorize_url(args))
        await install_grant(TokenCache(store, clock), store, provider, token, name, clock.now())
    print(f"authorised {name!r} ({how}): {_describe_grant(token, name)}")
    return 0


def read_login(stdin: TextIO, env: Mapping[str, str]) -> tuple[UserLogin | None, str]:
    """Username and user API key: from the environment, else prompted on a terminal, else stdin lines."""
    interactive = stdin.isatty()
    username = env.get(ENV_AC_USERNAME, "").strip()
    if not username:
        if interactive:
            print("AmeriCommerce username: ", end="", file=sys.stderr, flush=True)
        username = stdin.readline().strip()
    key = env.get(ENV_AC_USER_KEY, "").strip()
    if not key:
        if interactive:
            key = getpass.getpass("User API key (input hidden): ", stream=sys.stderr).strip()
        else:
            key = stdin.readline().strip()
    where = "type it at the prompt, set {env}, or pass it as line {line} of stdin"
    if not username:
        return None, "the desktop flow needs a username: " + where.format(
            env=ENV_AC_USERNAME, line=1
        )
    if not key:
        return None, "the desktop flow needs the user's API key: " + where.format(
            env=ENV_AC_USER_KEY, line=2
        )
    return UserLogin(username, key), ""


def _show_authorize_url(args: argparse.Namespace) -> Callable[[str], None]:
    def show(url: str) -> None:
        print(
            "Open this URL in a browser logged in to the store's admin console and grant access "
            f"(waiting up to {args.timeout:g}s for the redirect):",
            file=sys.stderr,
        )
        print(url, flush=True)

    return show


def _describe_grant(token: AccessToken, name: str) -> str:
    text = f"access token {token.fingerprint}"
    if token.expires_at is None:
        text += ", no known expiry"
    else:
        text += f", expires {token.expires_at.isoformat()}"
    if token.refresh_token:
        return text + f", refresh token {fingerprint(token.refresh_token)}"
    if token.expires_at is not None:
        return text + f", no refresh token: run 'syncd auth {name}' again before it expires"
    return text


def _usage(message: str) -> int:
    print(f"syncd: usage error: {message}", file=sys.stderr)
    return 2


async def healthcheck(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd healthcheck`: ask the running daemon's listener (/healthz, or /readyz with --ready)."""
    if not settings.health.enabled:
        print(
            "syncd: error: health.enabled: the health listener is off; set [health] enabled = true "
            "(or SYNCD_HEALTH__ENABLED=true) for the daemon and this command",
            file=sys.stderr,
        )
        return 2
    url = probe_url(settings.health, "/readyz" if args.ready else "/healthz")
    try:
        async with asyncio.timeout(args.timeout):
            ok, line = await check(url)
    except TimeoutError:
        ok, line = False, f"{url}: no answer within {args.timeout:g}s"
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _human(seconds: float) -> str:
    """`2h59m`-style: the two largest units."""
    rest, parts = int(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts[:2])


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


async def check_config(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd check-config`: settings already validated; say what was found."""
    print(f"config ok: {len(settings.sources)} source(s), store {settings.store.path}")
    for source in settings.sources:
        print(f"  {source.name}: {source.kind} {source.base_url} {source.parsed_schedule}")
    return 0


async def demo(products: int, db: Path) -> int:
    """`syncd demo`: start the emulator on a free loopback port and sync it into `db`."""
    from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig

    config = EmulatorConfig(adobe=AdobeConfig(products=products))
    async with Emulator(config) as emu:
        adobe = emu.adobe.config
        settings = Settings(
            store=StoreSettings(path=db),
            sources=(
                AdobeCommerceSourceSettings(
                    name="demo",
                    kind="adobe_commerce",
                    base_url=emu.url,  # type: ignore[arg-type]
                    page_size=100,
                    max_concurrency=8,
                    auth=ImsAuthSettings(
                        token_url=emu.ims_token_url,  # type: ignore[arg-type]
                        client_id=adobe.client_id,
                        client_secret=adobe.client_secret,  # type: ignore[arg-type]
                        org_id=adobe.org_id,
                    ),
                ),
            ),
        )
        print(f"emulator: {products} products at {emu.url} (loopback only)", file=sys.stderr)
        async with Runtime(settings) as runtime:
            bar = ProgressBar(sys.stderr, "demo")
            try:
                result = await runtime.sync("demo", progress=bar)
            finally:
                bar.close()
            events = await runtime.store.token_events("demo", limit=1000)
            stored = await runtime.store.count_products("demo")
        token_summary = ", ".join(
            f"{sum(e.event == kind for e in events)} {kind}"
            for kind in sorted({e.event for e in events})
        )
        print_result(
            result,
            sys.stdout,
            {
                "stored": f"{stored} products in {db}",
                "tokens": f"{token_summary or 'none'} "
                f"({emu.adobe.stats.token_requests} token request(s) served)",
            },
        )
    return 0 if result.ok else 1


async def serve_emulator(port: int, products: int, rate_limit: float | None) -> int:
    """`syncd emulator`: serve the emulator on 127.0.0.1 until interrupted."""
    from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, RateLimitConfig

    limit = RateLimitConfig(rate=rate_limit, burst=max(1, int(rate_limit))) if rate_limit else None
    config = EmulatorConfig(adobe=AdobeConfig(products=products, rate_limit=limit))
    async with Emulator(config, port=port) as emu:
        a = emu.adobe.config
        print(f"emulator listening on {emu.url}", file=sys.stderr)
        print(f"  IMS token URL   {emu.ims_token_url}", file=sys.stderr)
        print(f"  Adobe client    {a.client_id} / org {a.org_id}", file=sys.stderr)
        print(f"  AmeriCommerce   {emu.url}/api/v1/products", file=sys.stderr)
        await asyncio.Event().wait()
    return 0

"""`syncd status` and `syncd healthcheck`: how each source is doing, for people and scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any

from syncd.clock import Clock, SystemClock
from syncd.commands.output import human_duration
from syncd.config import Settings, SourceSettings
from syncd.feed import webhook_backlog
from syncd.ops.health import check, probe_url
from syncd.ops.staleness import SourceHealth, assess, limits
from syncd.store import RunRecord, Store, TokenEvent
from syncd.store.factory import open_store
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_leases import LeaseRow, PostgresLeases
from syncd.store.rows import iso

TOKEN_GRANTS = ("issued", "refreshed", "reused")


STATUS_SCHEMA = 1
"""Version of the `status --json` shape (docs/MONITORING.md): keys are added, never renamed."""


async def show_status(
    args: argparse.Namespace, settings: Settings, *, clock: Clock | None = None
) -> int:
    """`syncd status`: each source's last run, staleness, product count, token expiry and actions."""
    now = (clock or SystemClock()).now()
    rows: list[dict[str, Any]] = []
    expiry: dict[str, str] = {}
    async with open_store(settings.store) as store:
        last = {run.source: run for run in await store.last_runs()}
        leases: dict[str, LeaseRow] = {}
        if isinstance(store, PostgresStore):
            coordination = PostgresLeases(store, settings.replica.lease_seconds)
            leases = {row.source: row for row in await coordination.leases()}
        health = {h.source: h for h in await assess(store, limits(settings.sources, now), now)}
        for source in settings.sources:
            grants = await store.token_events(source.name, limit=1, event=TOKEN_GRANTS)
            grant = grants[0] if grants else None
            expiry[source.name] = _expiry_text(grant)
            rows.append(
                {
                    **await _source_row(
                        store, source, last.get(source.name), health.get(source.name), grant
                    ),
                    "lease": _lease(leases.get(source.name)),
                }
            )
        feed: dict[str, dict[str, object]] = {}
        backlog: dict[tuple[str, str], int] = {}
        feed = {name: asdict(head) for name, head in (await store.feed_heads()).items()}
        backlog = await webhook_backlog(store, settings.webhooks)
    webhooks = [{"webhook": w, "source": s, "backlog": n} for (w, s), n in sorted(backlog.items())]
    if args.json:
        document = {
            "schema": STATUS_SCHEMA,
            "generated_at": iso(now),
            "sources": rows,
            "feed": feed,
            "webhooks": webhooks,
        }
        print(json.dumps(document, indent=2))
        return 0
    _print_status(rows, expiry, webhooks)
    return 0


async def _source_row(
    store: Store,
    source: SourceSettings,
    run: RunRecord | None,
    h: SourceHealth | None,
    grant: TokenEvent | None,
) -> dict[str, Any]:
    """One source's entry of `status --json`."""
    state = await store.source_state(source.name)
    return {
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
        "last_success_at": iso(h.last_success_at) if h else None,
        "age_s": round(h.age_s) if h and h.age_s is not None else None,
        "stale_limit_s": round(h.limit_s) if h else None,
        "stale": h.stale if h else None,
        "token_expires_at": grant.expires_at.isoformat() if grant and grant.expires_at else None,
        "needs_reauth": state.needs_reauth,
        "reauth_reason": state.reauth_reason,
        "action": f"run 'syncd auth {source.name}'" if state.needs_reauth else None,
    }


def _print_status(
    rows: list[dict[str, Any]], expiry: dict[str, str], webhooks: list[dict[str, Any]]
) -> None:
    """`syncd status` for people: a few lines per source, then the webhooks' backlogs."""
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
                f"  last success: {row['last_success_at']} ({human_duration(row['age_s'])} ago, "
                f"stale after {human_duration(row['stale_limit_s'])}){stale}"
            )
        print(f"  token expires: {expiry[row['source']]}")
        lease = row["lease"]
        if lease is not None:
            holder = (
                f"{lease['owner']} (lease epoch {lease['epoch']} until {lease['expires_at']})"
                if lease["live"]
                else "none (free)"
            )
            print(f"  owner: {holder}; next run: {lease['next_run_at']}")
        if row["action"]:
            print(f"  ACTION NEEDED: {row['action']}")
            if row["reauth_reason"]:
                print(f"  reason: {row['reauth_reason']}")
    for hook in webhooks:
        print(f"webhook {hook['webhook']} -> {hook['source']}: {hook['backlog']} entries pending")


def _lease(row: LeaseRow | None) -> dict[str, Any] | None:
    """A source's lease for `status` (PostgreSQL; None on SQLite or before any replica ran)."""
    if row is None:
        return None
    return {
        "owner": row.owner if row.live else None,
        "epoch": row.epoch,
        "expires_at": iso(row.expires_at) if row.live else None,
        "live": row.live,
        "next_run_at": iso(row.next_run_at),
        "next_full_at": iso(row.next_full_at),
    }


def _expiry_text(grant: TokenEvent | None) -> str:
    if grant is None:
        return "no token yet"
    return grant.expires_at.isoformat() if grant.expires_at else "never (or unknown)"


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

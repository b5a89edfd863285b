"""`syncd replicas`: the replicas sharing a PostgreSQL database, for people and scripts."""

from __future__ import annotations

import argparse
import json
import sys

from syncd.config import Settings
from syncd.store.factory import open_store
from syncd.store.postgres import PostgresStore
from syncd.store.postgres_leases import PostgresLeases
from syncd.store.rows import iso


async def show_replicas(args: argparse.Namespace, settings: Settings) -> int:
    """List the live replicas (a heartbeat within three lease periods): id, host, pid, start,
    sources held and last heartbeat."""
    async with open_store(settings.store, redactor=settings.redactor) as store:
        if not isinstance(store, PostgresStore):
            print(
                "syncd: error: store.url: replicas share sources on PostgreSQL only; this "
                "configuration uses SQLite (one process), so there are none to list",
                file=sys.stderr,
            )
            return 2
        rows = await PostgresLeases(store, settings.replica.lease_seconds).replicas()
    listed = [
        {
            "id": r.id,
            "host": r.host,
            "pid": r.pid,
            "started_at": iso(r.started_at),
            "heartbeat_at": iso(r.heartbeat_at),
            "sources_held": r.sources_held,
        }
        for r in rows
    ]
    if args.json:
        print(json.dumps({"replicas": listed}, indent=2))
        return 0
    if not listed:
        print("no live replicas")
    for r in listed:
        print(
            f"{r['id']}  host {r['host']} pid {r['pid']}  started {r['started_at']}  "
            f"{r['sources_held']} sources held  last heartbeat {r['heartbeat_at']}"
        )
    return 0

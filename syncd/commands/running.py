"""`syncd run`, `syncd sync` and `syncd check-config`: the commands that sync."""

from __future__ import annotations

import argparse
import os
import sys

from syncd.commands.output import ProgressBar, print_result
from syncd.config import (
    Settings,
)
from syncd.daemon import Daemon, Runtime
from syncd.ops.notify import Notifier
from syncd.store.factory import store_name


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


async def check_config(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd check-config`: settings already validated; say what was found."""
    print(f"config ok: {len(settings.sources)} source(s), store {store_name(settings.store)}")
    for source in settings.sources:
        print(f"  {source.name}: {source.kind} {source.base_url} {source.parsed_schedule}")
    return 0

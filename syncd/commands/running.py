"""`syncd run`, `syncd sync` and `syncd check-config`: the commands that sync."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from syncd.clock import Clock
from syncd.commands.output import ProgressBar, print_result
from syncd.config import (
    Settings,
)
from syncd.config.readiness import require_runnable, require_secrets
from syncd.daemon import Daemon
from syncd.ops.notify import Notifier
from syncd.runtime import Runtime
from syncd.store.base import RunKind
from syncd.store.factory import store_name


async def run_daemon(
    args: argparse.Namespace, settings: Settings, *, clock: Clock | None = None
) -> int:
    """`syncd run`: schedule every source until SIGTERM/SIGINT."""
    require_runnable(settings)
    notifier = Notifier.from_environ(os.environ)
    async with Runtime(settings, clock) as runtime, Daemon(runtime, notifier=notifier) as daemon:
        await daemon.wait()
    return 0


async def sync_now(
    args: argparse.Namespace, settings: Settings, *, clock: Clock | None = None
) -> int:
    """`syncd sync SOURCE`: one run now; exit 0 on success."""
    require_secrets(settings, [args.source])
    async with Runtime(settings, clock) as runtime:
        state = await runtime.store.source_state(args.source)
        if state.needs_reauth:
            print(
                f"syncd: error: source {args.source!r} needs re-authorisation "
                f"({state.reauth_reason}); run 'syncd auth {args.source}'",
                file=sys.stderr,
            )
            return 1
        bar = ProgressBar(sys.stderr, args.source)
        with _cancelled_by(signal.SIGTERM) as received:
            try:
                kind: RunKind | None = "full" if args.full else None
                result = await runtime.sync(args.source, kind, progress=bar)
            except asyncio.CancelledError:
                if not received:
                    raise
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                bar.close()
                print(f"syncd: terminated ({received[0].name}); the run is recorded as cancelled",
                      file=sys.stderr)  # fmt: skip
                return 128 + received[0].value
            finally:
                bar.close()
    print_result(result, sys.stdout)
    return 0 if result.ok else 1


@contextmanager
def _cancelled_by(sig: signal.Signals) -> Iterator[list[signal.Signals]]:
    """While the block runs, `sig` cancels the current task as Ctrl-C does, with a reason the
    run records (not the default action: that ends the process with the run left `running`);
    yields the list the received signal is put in."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[signal.Signals] = []

    def cancel() -> None:
        if task is not None and not received:  # a second signal must not cut the final write
            received.append(sig)
            task.cancel(f"syncd sync was stopped by {sig.name} during the run")

    try:
        loop.add_signal_handler(sig, cancel)
    except (RuntimeError, ValueError):
        # Not the main thread (an embedding caller): signals are delivered elsewhere anyway.
        yield received
        return
    try:
        yield received
    finally:
        loop.remove_signal_handler(sig)


async def check_config(args: argparse.Namespace, settings: Settings) -> int:
    """`syncd check-config`: what `run` would refuse (one line each, exit 2), or what was found."""
    require_runnable(settings)
    print(f"config ok: {len(settings.sources)} source(s), store {store_name(settings.store)}")
    for source in settings.sources:
        print(f"  {source.name}: {source.kind} {source.base_url} {source.parsed_schedule}")
    return 0

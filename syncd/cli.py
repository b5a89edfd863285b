"""The `syncd` command: parse arguments, configure logging, run one thing, exit with a clear code.

Exit codes: 0 success, 1 a run or command failed, 2 invalid configuration or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from syncd import __version__
from syncd.config import Settings, load_settings
from syncd.errors import ConfigError, SyncdError
from syncd.gcpolicy import tune_for_streaming
from syncd.logging import configure_logging, get_logger

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130

log = get_logger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd", description="Keep a local SQLite copy of commerce product catalogs fresh."
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument("--config", type=Path, help="TOML config file (default: $SYNCD_CONFIG)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "json", "console"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("run", help="run the daemon: sync every source on its schedule")
    sync = commands.add_parser("sync", help="sync one source now and exit")
    sync.add_argument("source", help="source name from the config")
    sync.add_argument("--full", action="store_true", help="force a full run")
    status = commands.add_parser("status", help="last run, counts and token expiry per source")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("check-config", help="validate the configuration and exit")
    auth = commands.add_parser(
        "auth", help="authorise an AmeriCommerce source (desktop flow, or --web)"
    )
    auth.add_argument("source", help="source name from the config")
    auth.add_argument(
        "--web", action="store_true", help="web flow: print a URL, wait for the redirect"
    )
    auth.add_argument(
        "--timeout",
        type=_positive,
        default=300.0,
        help="seconds the web flow waits for the redirect (default 300)",
    )

    runs = commands.add_parser("runs", help="the run history, newest first")
    runs.add_argument("source", nargs="?", help="only this source")
    runs.add_argument("--since", help="ISO-8601 date/time or an age such as 30m, 6h, 2d")
    runs.add_argument("--status", choices=["running", "succeeded", "failed", "cancelled"])
    runs.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    events = commands.add_parser("events", help="token events (issued, refreshed, failed...)")
    events.add_argument("source", nargs="?", help="only this source")
    events.add_argument("--since", help="ISO-8601 date/time or an age such as 30m, 6h, 2d")
    events.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    events.add_argument("--json", action="store_true", help="machine-readable output")
    health = commands.add_parser(
        "healthcheck", help="ask the running daemon's health listener; exit 0 if healthy"
    )
    health.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")

    demo = commands.add_parser("demo", help="sync the bundled emulator into a local SQLite file")
    demo.add_argument("--products", type=int, default=3000, help="catalog size (default 3000)")
    demo.add_argument("--db", type=Path, default=Path("syncd-demo.db"), help="SQLite file")

    emulator = commands.add_parser("emulator", help="serve the platform emulator on loopback")
    emulator.add_argument("--port", type=int, default=8780)
    emulator.add_argument("--products", type=int, default=3000)
    emulator.add_argument("--rate-limit", type=float, help="Adobe requests per second (429 above)")
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def console() -> int:
    """The `syncd` console script: a process of its own, so its collector is tuned for streaming."""
    tune_for_streaming()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `syncd` console script."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level or "info", args.log_format or "auto")
    try:
        return _dispatch(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"syncd: config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except SyncdError as exc:
        print(f"syncd: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.log_level is None and args.log_format is None:
        configure_logging(settings.log_level, settings.log_format)
    return settings


def _dispatch(args: argparse.Namespace) -> int:
    from syncd.commands import authorize, demo, history, running, status

    handlers: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {
        "run": running.run_daemon,
        "sync": running.sync_now,
        "check-config": running.check_config,
        "status": status.show_status,
        "healthcheck": status.healthcheck,
        "auth": authorize.authorize_source,
        "runs": history.show_runs,
        "events": history.show_events,
    }
    if args.command == "demo":
        return asyncio.run(demo.demo(args.products, args.db))
    if args.command == "emulator":
        return asyncio.run(demo.serve_emulator(args.port, args.products, args.rate_limit))
    settings = _settings(args)
    return asyncio.run(handlers[args.command](args, settings))


if __name__ == "__main__":
    sys.exit(main())

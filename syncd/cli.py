"""The `syncd` command: parse arguments, configure logging, run one thing, exit with a clear code.

Exit codes: 0 success, 1 a run or command failed, 2 invalid configuration or usage, 130 interrupted.
Every failure is one line on stderr; an unexpected exception is reported as an internal error, with
its traceback only at `--log-level debug`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pydantic import SecretStr

from syncd import __version__
from syncd.config import Settings, load_settings
from syncd.errors import ConfigError, SyncdError
from syncd.gcpolicy import tune_for_streaming
from syncd.logging import configure_logging, get_logger
from syncd.store.base import TOKEN_EVENT_KINDS

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
T = TypeVar("T", int, float)
STANDALONE = frozenset({"demo", "emulator"})
"""Commands that build their own settings and never read the configuration."""

log = get_logger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="syncd", description="Keep a local SQLite copy of commerce product catalogs fresh."
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument("--config", type=_path, help="TOML config file (default: $SYNCD_CONFIG)")
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
    events.add_argument(
        "--event",
        action="append",
        metavar="KIND",
        help=f"only these kinds: {', '.join(TOKEN_EVENT_KINDS)} "
        "(repeat it or separate with commas)",
    )
    events.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    events.add_argument("--json", action="store_true", help="machine-readable output")
    _feed_commands(commands)
    health = commands.add_parser(
        "healthcheck", help="ask the running daemon's health listener; exit 0 if healthy"
    )
    health.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    health.add_argument("--timeout", type=_positive, default=5.0, help="seconds (default 5)")

    demo = commands.add_parser("demo", help="sync the bundled emulator into a local SQLite file")
    demo.add_argument("--products", type=_count, default=3000, help="catalog size (default 3000)")
    demo.add_argument("--db", type=_file, default=Path("syncd-demo.db"), help="SQLite file")

    emulator = commands.add_parser("emulator", help="serve the platform emulator on loopback")
    emulator.add_argument("--port", type=_port, default=8780, help="0 picks a free port")
    emulator.add_argument("--products", type=_count, default=3000)
    emulator.add_argument("--rate-limit", type=_rate, help="Adobe requests per second (429 above)")
    return parser


def _feed_commands(commands: Any) -> None:
    """`changes` and `export` (docs/CHANGES.md)."""
    changes = commands.add_parser("changes", help="the change feed: what each sync changed")
    changes.add_argument("source", nargs="?", help="only this source")
    changes.add_argument(
        "--since", type=_count, default=0, help="entries after this seq (default 0: all)"
    )
    changes.add_argument("--follow", action="store_true", help="wait for new entries")
    changes.add_argument("--limit", type=_at_least_one, help="stop after this many entries")
    changes.add_argument("--json", action="store_true", help="one JSON object per line")
    changes.add_argument(
        "--interval", type=_positive, default=1.0, help="--follow: seconds between polls"
    )
    export = commands.add_parser(
        "export", help="the live catalog of a source, and the feed seq to continue from"
    )
    export.add_argument("source", help="source name")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")


def _at_least_one(text: str) -> int:
    return _checked(text, int, lambda v: v >= 1, "a whole number, 1 or more")


def _checked(text: str, kind: Callable[[str], T], ok: Callable[[T], bool], expected: str) -> T:
    """`text` as `kind` if `ok` holds for it; one argparse line saying what was expected if not."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected {expected}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected {expected}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _rate(text: str) -> float:
    return _checked(
        text, float, lambda v: 0 < v < math.inf, "a positive number of requests per second"
    )


def _count(text: str) -> int:
    return _checked(text, int, lambda v: v >= 0, "a whole number, 0 or more")


def _port(text: str) -> int:
    return _checked(text, int, lambda v: 0 <= v <= 65535, "a TCP port, 0-65535")


def _path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("'' is invalid: expected a file path")
    return Path(text)


def _file(text: str) -> Path:
    path = _path(text)
    try:
        is_dir = path.is_dir()
    except OSError:  # unreadable parents: the store says so when it opens
        is_dir = False
    if is_dir:
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: expected a file path")
    return path


def console() -> int:
    """The `syncd` console script: a process of its own, so its collector is tuned for streaming."""
    tune_for_streaming()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `syncd` console script."""
    args = _parser().parse_args(argv)
    configure_logging(args.log_level or "info", args.log_format or "auto")
    settings: Settings | None = None
    try:
        if args.command not in STANDALONE:
            settings = _settings(args)
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _report(exc, _secret_values(settings))


def _report(exc: BaseException, secrets: Iterable[str]) -> int:
    """Print why the command failed, one line (or one per config problem); return the exit code."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # a TaskGroup wraps the one error that stopped it
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(f"syncd: config error: {_line(problem, secrets)}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(exc, SyncdError):
        print(f"syncd: error: {_line(str(exc), secrets)}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(exc, OSError) and exc.strerror:
        # The environment refused (permissions, disk full, address in use): not a bug to report.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"syncd: error: {_line(exc.strerror + where, secrets)}", file=sys.stderr)
        return EXIT_FAILED
    # Not "log.exception": a debugging aid for whoever asked for debug, not a monitored event.
    details = "".join(traceback.format_exception(exc))
    log.debug("traceback of the internal error", traceback=_scrub(details, secrets))
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    print(
        f"syncd: internal error: {_line(what, secrets)}; please report it "
        "(run with --log-level debug for the traceback)",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _secret_values(settings: Settings | None) -> set[str]:
    """Every secret the process may hold, so that no error message can echo one."""
    values = {v for k, v in os.environ.items() if k.upper().startswith("SYNCD_SECRET_")}
    for source in settings.sources if settings else ():
        for name in type(source.auth).model_fields:
            value = getattr(source.auth, name)
            if isinstance(value, SecretStr):
                values.add(value.get_secret_value())
    for hook in settings.webhooks if settings else ():
        values.add(hook.secret.get_secret_value())
    # Values under 4 characters are left out: replacing them everywhere would garble every line.
    return {v for v in values if len(v.strip()) >= 4}


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every known secret replaced."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def _line(text: str, secrets: Iterable[str]) -> str:
    """`text` scrubbed and folded onto one line."""
    return " ".join(_scrub(text, secrets).split())


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.log_level is None and args.log_format is None:
        configure_logging(settings.log_level, settings.log_format)
    return settings


def _dispatch(args: argparse.Namespace, settings: Settings | None) -> int:
    from syncd.commands import authorize, changes, demo, history, running, status

    handlers: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {
        "run": running.run_daemon,
        "sync": running.sync_now,
        "check-config": running.check_config,
        "status": status.show_status,
        "healthcheck": status.healthcheck,
        "auth": authorize.authorize_source,
        "runs": history.show_runs,
        "events": history.show_events,
        "changes": changes.show_changes,
        "export": changes.export_catalog,
    }
    if args.command == "demo":
        return asyncio.run(demo.demo(args.products, args.db))
    if args.command == "emulator":
        return asyncio.run(demo.serve_emulator(args.port, args.products, args.rate_limit))
    if settings is None:
        raise RuntimeError(
            f"{args.command!r} needs settings; only {sorted(STANDALONE)} run without"
        )
    return asyncio.run(handlers[args.command](args, settings))


if __name__ == "__main__":
    sys.exit(main())

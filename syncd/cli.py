"""The `syncd` command: parse arguments, configure logging, run one thing, exit with a clear code.

Exit codes: 0 success, 1 a run or command failed, 2 invalid configuration or usage, 130 interrupted
(SIGINT), 143 terminated (SIGTERM, `sync`: its run is recorded `cancelled`).
Every failure is one line on stderr; an unexpected exception is reported as an internal error, with
its traceback only at `--log-level debug`. The process's one `Redactor` is created here: logging,
the settings (and all that is built from them) and the command's stdout and stderr share it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from syncd import __version__
from syncd.clock import Clock, SystemClock
from syncd.commands import store_copy
from syncd.config import Settings, load_settings
from syncd.errors import ConfigError, SyncdError
from syncd.gcpolicy import tune_for_streaming
from syncd.logging import configure_logging, get_logger
from syncd.redaction import Redactor
from syncd.store.base import TOKEN_EVENT_KINDS

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
T = TypeVar("T", int, float)
STANDALONE = frozenset({"demo", "emulator", "config-schema"})
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
    replicas = commands.add_parser(
        "replicas", help="live replicas sharing the PostgreSQL database, and what each holds"
    )
    replicas.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser(
        "check-config", help="validate the configuration as 'run' would, offline, and exit"
    )
    check = commands.add_parser(
        "check", help="online check: a token, one product and the rate limits of each source"
    )
    check.add_argument("source", nargs="?", help="only this source")
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

    _history_commands(commands)
    _feed_commands(commands)
    health = commands.add_parser(
        "healthcheck", help="ask the running daemon's health listener; exit 0 if healthy"
    )
    health.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    health.add_argument("--timeout", type=_positive, default=5.0, help="seconds (default 5)")

    commands.add_parser(
        "config-schema", help="print the JSON Schema of the config file (for editors)"
    )

    demo = commands.add_parser("demo", help="sync the bundled emulator into a local SQLite file")
    demo.add_argument("--products", type=_count, default=3000, help="catalog size (default 3000)")
    demo.add_argument("--db", type=_file, default=Path("syncd-demo.db"), help="SQLite file")

    emulator = commands.add_parser("emulator", help="serve the platform emulator on loopback")
    emulator.add_argument("--port", type=_port, default=8780, help="0 picks a free port")
    emulator.add_argument("--products", type=_count, default=3000)
    emulator.add_argument("--rate-limit", type=_rate, help="Adobe requests per second (429 above)")
    emulator.add_argument(
        "--write-config",
        type=_file,
        metavar="FILE",
        help="write a config with one source per platform, pointing at this emulator",
    )
    store_copy.add_parser(commands)
    return parser


def _history_commands(commands: Any) -> None:
    """`runs` and `events`: what the store remembers of runs and tokens."""
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


def main(argv: Sequence[str] | None = None, clock: Clock | None = None) -> int:
    """Entry point of the `syncd` console script; `clock` is what the commands read the time
    from (the system's unless a test gives its own)."""
    args = _parser().parse_args(argv)
    redactor = Redactor()
    configure_logging(args.log_level or "info", args.log_format or "auto", redactor=redactor)
    from syncd.commands.output import redacted_output

    with redacted_output(redactor):
        try:
            settings = None if args.command in STANDALONE else _settings(args, redactor)
            return _dispatch(args, settings, clock or SystemClock())
        except KeyboardInterrupt:
            print("syncd: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:
            return _report(exc, redactor)


def _report(exc: BaseException, redactor: Redactor) -> int:
    """Print why the command failed, one line (or one per config problem); return the exit code."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # a TaskGroup wraps the one error that stopped it
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(f"syncd: config error: {_line(problem, redactor)}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(exc, SyncdError):
        print(f"syncd: error: {_line(str(exc), redactor)}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(exc, OSError) and exc.strerror:
        # The environment refused (permissions, disk full, address in use): not a bug to report.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"syncd: error: {_line(exc.strerror + where, redactor)}", file=sys.stderr)
        return EXIT_FAILED
    # Not "log.exception": a debugging aid for whoever asked for debug, not a monitored event.
    details = "".join(traceback.format_exception(exc))
    log.debug("traceback of the internal error", traceback=details)
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    print(
        f"syncd: internal error: {_line(what, redactor)}; please report it "
        "(run with --log-level debug for the traceback)",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _line(text: str, redactor: Redactor) -> str:
    """`text` redacted and folded onto one line (redacted first: a secret may span the fold)."""
    return " ".join(redactor.redact(text).split())


def _settings(args: argparse.Namespace, redactor: Redactor) -> Settings:
    """The settings, carrying `redactor` with every secret they hold registered in it."""
    # No secret is needed to read the config: each command asks for those of the sources it uses.
    settings = load_settings(args.config, redactor, secrets_of=())
    if args.log_level is None and args.log_format is None:
        configure_logging(settings.log_level, settings.log_format, redactor=redactor)
    return settings


def _dispatch(args: argparse.Namespace, settings: Settings | None, clock: Clock) -> int:
    from syncd.commands import (
        authorize,
        changes,
        check,
        demo,
        emulator,
        history,
        replicas,
        running,
        status,
    )  # fmt: skip

    handlers: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]] = {
        "run": partial(running.run_daemon, clock=clock),
        "sync": partial(running.sync_now, clock=clock),
        "check-config": running.check_config,
        "check": partial(check.check_sources, clock=clock),
        "status": partial(status.show_status, clock=clock),
        "replicas": replicas.show_replicas,
        "healthcheck": status.healthcheck,
        "auth": partial(authorize.authorize_source, clock=clock),
        "runs": partial(history.show_runs, clock=clock),
        "events": partial(history.show_events, clock=clock),
        "store": store_copy.copy_store,
        "changes": changes.show_changes,
        "export": changes.export_catalog,
    }
    if args.command == "config-schema":
        from syncd.config.schema import config_schema_text

        sys.stdout.write(config_schema_text())
        return EXIT_OK
    if args.command == "demo":
        return asyncio.run(demo.demo(args.products, args.db))
    if args.command == "emulator":
        return asyncio.run(
            emulator.serve_emulator(
                args.port, args.products, args.rate_limit, config_file=args.write_config
            )
        )
    if settings is None:
        raise RuntimeError(
            f"{args.command!r} needs settings; only {sorted(STANDALONE)} run without"
        )
    return asyncio.run(handlers[args.command](args, settings))


if __name__ == "__main__":
    sys.exit(main())

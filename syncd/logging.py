"""The only place structlog is configured: JSON lines for machines, a readable console for people."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO, cast

import structlog

_SENSITIVE = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "client_secret",
        "app_secret",
        "static_token",
        "password",
        "signature",
        "user_key",
        "authorization",
    }
)
ERASE_LINE = "\r\x1b[K"
"""Column 0, clear the line: a console log line replaces a progress bar instead of trailing it."""
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Safety net: whatever a caller passes under a secret-looking key never reaches the output."""
    for key in _SENSITIVE.intersection(event):
        event[key] = "[redacted]"
    return event


def _erase_line_first(_: Any, __: str, line: structlog.typing.EventDict) -> str:
    # Runs after the renderer, so what it receives is the rendered line, not an event dict.
    return ERASE_LINE + cast(str, line)


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Send structured logs to `stream` (stderr): JSON unless it is a terminal or `fmt` says otherwise."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    # On a terminal a progress bar may be drawn, unterminated, on the line a log line starts on.
    finish: list[structlog.typing.Processor] = (
        [_erase_line_first] if stream.isatty() and not use_json else []
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    # Libraries (APScheduler, aiohttp, asyncio) log through the stdlib: same format, same stream.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
                *finish,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # APScheduler announces every job execution at INFO; syncd logs its own sync.* events.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, _LEVELS[level]))
    # oauthlib logs each OAuth 1.0a signature's parameters and base string (the access token in
    # them) at DEBUG: --log-level debug must not print a Magento integration's credentials.
    logging.getLogger("oauthlib").setLevel(max(logging.INFO, _LEVELS[level]))
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            renderer,
            *finish,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger tagged with the module that logs."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger

"""The only place structlog is configured: JSON lines for machines, a readable console for people."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO, cast

import structlog

from syncd.redaction import Redactor

ERASE_LINE = "\r\x1b[K"
"""Column 0, clear the line: a console log line replaces a progress bar instead of trailing it."""
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
QUIET_LIBRARIES = ("aiosqlite", "aiohttp", "asyncio")
"""Never below WARNING, whatever the level: at DEBUG aiosqlite logs every statement with its
parameters (a token being saved), aiohttp request and response headers, asyncio handles' arguments."""


def _stack_as_text(
    _: Any, __: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    # The console renderer prints `stack` as a traceback string; syncd logs a list of frames.
    stack = event.get("stack")
    if isinstance(stack, list | tuple):
        event["stack"] = "\n".join(str(frame) for frame in stack)
    return event


def _erase_line_first(_: Any, __: str, line: structlog.typing.EventDict) -> str:
    # Runs after the renderer, so what it receives is the rendered line, not an event dict.
    return ERASE_LINE + cast(str, line)


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    redactor: Redactor | None = None,
) -> None:
    """Send structured logs to `stream` (stderr): JSON unless it is a terminal or `fmt` says otherwise.

    Every event, syncd's and the libraries', passes through `redactor` last before it is rendered
    (exceptions included); without one, only fields named like a secret are redacted.
    """
    redactor = redactor or Redactor()
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    before_render: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, redactor]
        if use_json
        else [structlog.processors.format_exc_info, _stack_as_text, redactor]
    )
    # On a terminal a progress bar may be drawn, unterminated, on the line a log line starts on.
    finish: list[structlog.typing.Processor] = (
        [_erase_line_first] if stream.isatty() and not use_json else []
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Libraries (APScheduler, aiohttp, asyncio) log through the stdlib: same format, same stream.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *before_render,
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
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, _LEVELS[level]))
    # oauthlib logs each OAuth 1.0a signature's parameters and base string (the access token in
    # them) at DEBUG: --log-level debug must not print a Magento integration's credentials.
    logging.getLogger("oauthlib").setLevel(max(logging.INFO, _LEVELS[level]))
    structlog.configure(
        processors=[
            *shared,
            *before_render,
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

"""Log output: JSON lines for machines, stdlib records in the same format, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
import re

from syncd.logging import configure_logging, get_logger


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_level_and_utc_timestamp() -> None:
    """A syncd event is one JSON object with event, level and an ISO UTC timestamp."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    get_logger("t").info("sync.finished", items_seen=3)
    (line,) = lines(stream)
    assert line["event"] == "sync.finished" and line["items_seen"] == 3 and line["level"] == "info"
    assert str(line["timestamp"]).endswith("Z")


def test_library_records_come_out_as_json_too() -> None:
    """A stdlib record (APScheduler, aiohttp) is rendered in the same JSON format."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    logging.getLogger("aiohttp.client").warning("connection pool is full")
    (line,) = lines(stream)
    assert line["event"] == "connection pool is full"
    assert line["logger"] == "aiohttp.client" and line["level"] == "warning"


def test_level_filters_debug() -> None:
    """Below the configured level nothing is written."""
    stream = io.StringIO()
    configure_logging("warning", "json", stream)
    get_logger("t").info("quiet")
    assert stream.getvalue() == ""


def test_secret_looking_fields_are_redacted() -> None:
    """Whatever is passed as token/client_secret/... never reaches the output."""
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    get_logger("t").info("oops", access_token="tok-123", client_secret="sek", fingerprint="fp")
    (line,) = lines(stream)
    assert line["access_token"] == line["client_secret"] == "[redacted]"
    assert "tok-123" not in stream.getvalue() and line["fingerprint"] == "fp"


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_readable_coloured_lines_that_erase_a_progress_bar() -> None:
    """auto on a terminal: console text with colours, key=value fields, each line clearing the
    line first so it never trails a progress bar."""
    stream = Terminal()
    configure_logging("info", "auto", stream)
    get_logger("t").info("sync.finished", source="shop", items_seen=3)
    logging.getLogger("aiohttp.client").warning("pool full")
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 2 and "\x1b[" in text.replace("\r\x1b[K", "")
    plain = re.sub(r"\x1b\[[0-9;]*[mK]", "", text)
    first, second = plain.rstrip("\n").split("\n")
    assert re.match(r"^\r\S+Z \[info +\] sync\.finished +items_seen=3 source=shop$", first)
    assert "pool full" in second and "[warning" in second


def test_console_format_off_a_terminal_is_plain_text() -> None:
    """--log-format console into a file or pipe: readable, but no escape codes at all."""
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    get_logger("t").info("sync.started", source="shop")
    line = stream.getvalue()
    assert "\x1b" not in line and "\r" not in line
    assert "sync.started" in line and "source=shop" in line

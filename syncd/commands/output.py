"""How commands print: the terminal progress bar, a run's summary, short durations, and the
redaction every line of a command's stdout and stderr passes through."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from syncd.logging import ERASE_LINE
from syncd.redaction import Redactor
from syncd.sync import SyncResult


class RedactingStream(io.TextIOBase):
    """A text stream that writes through `redactor` into `target`: what a command prints (a
    table, `--json`, an error line) can never show a registered secret. Redacted per `write`: a
    secret split over two writes would not be seen, and no printer of syncd splits a value."""

    def __init__(self, target: TextIO, redactor: Redactor) -> None:
        super().__init__()
        self._target = target
        self._redactor = redactor

    def write(self, text: str) -> int:
        self._target.write(self._redactor.redact(text))
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"

    def fileno(self) -> int:
        return self._target.fileno()


@contextmanager
def redacted_output(redactor: Redactor) -> Iterator[None]:
    """`sys.stdout` and `sys.stderr` written through `redactor` while the block runs."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = RedactingStream(out, redactor)
    sys.stderr = RedactingStream(err, redactor)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


class ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere (logs say enough there).

    A console log line erases the bar (see `syncd.logging`); the next page draws it again below.
    Besides pages and products it shows the rate in products/s, the elapsed time and, when the
    page count is known, an estimate of the time left (from the pages done so far).
    """

    def __init__(
        self, stream: TextIO, label: str, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._label = label
        self._monotonic = monotonic
        self._started = monotonic()
        self._enabled = stream.isatty()
        self._text = ""
        self._ended = False

    def __call__(self, pages: int, expected: int | None, items: int) -> None:
        if not self._enabled or self._ended:
            return
        elapsed = max(0.0, self._monotonic() - self._started)
        timing = f"{items / elapsed:,.0f} products/s, " if elapsed > 0 else ""
        timing += f"{clock_time(elapsed)} elapsed"
        if expected:
            width = 30
            filled = min(width, round(width * pages / expected))
            bar = "#" * filled + "-" * (width - filled)
            if 0 < pages < expected:
                timing += f", ETA {clock_time(elapsed / pages * (expected - pages))}"
            self._text = (
                f"{self._label} [{bar}] {pages}/{expected} pages, {items} products, {timing}"
            )
        else:
            self._text = f"{self._label} {pages} pages, {items} products, {timing}"
        self._stream.write(ERASE_LINE + self._text)
        if expected and pages >= expected:
            # Complete: end the line now so the run's last log lines start on their own.
            self._stream.write("\n")
            self._ended = True
        self._stream.flush()

    def close(self) -> None:
        """Leave the last state of the bar on its own line (a log line may have erased it)."""
        if self._enabled and self._text and not self._ended:
            self._stream.write(ERASE_LINE + self._text + "\n")
            self._stream.flush()
        self._ended = True


def print_result(result: SyncResult, out: TextIO, extra: dict[str, Any] | None = None) -> None:
    """A human summary of one run."""
    t = result.totals
    lines = [
        f"sync {result.source}: {result.status} in {result.duration:.2f}s ({result.kind} run "
        f"#{result.run_id})",
        f"  products   {t.items_seen} seen: {t.items_created} new, {t.items_updated} changed, "
        f"{t.items_unchanged} unchanged",
        f"  pages      {t.pages}",
        f"  requests   {t.requests} ({t.retries} retries, {t.rate_limited} rate limited)",
    ]
    if result.latency:
        lat = result.latency
        lines.append(
            f"  latency    p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, max {lat['max_ms']} ms"
        )
    if result.duration > 0 and t.items_seen:
        lines.append(f"  throughput {t.items_seen / result.duration:,.0f} products/s")
    for key, value in (extra or {}).items():
        lines.append(f"  {key:<10} {value}")
    if result.error:
        lines.append(f"  error      {result.error}")
    print("\n".join(lines), file=out)


def clock_time(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour on (rounded to the second)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def human_duration(seconds: float) -> str:
    """`2h59m`-style: the two largest units."""
    rest, parts = int(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts[:2])

"""Which stage of a full sync bounds it: the event loop's samples by stage, plus the SQLite thread.

pyinstrument samples the main thread (the event loop: HTTP, JSON parsing, hashing, the engine);
the SQLite work runs in aiosqlite's thread, whose CPU seconds come from /proc instead. Together
they say where a product's CPU time goes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Frame(Protocol):
    """The part of `pyinstrument.frame.Frame` this module reads."""

    @property
    def function(self) -> str:
        """The function's name."""
        ...

    @property
    def file_path(self) -> str | None:
        """Where it is defined."""
        ...

    @property
    def time(self) -> float:
        """Seconds sampled in it and below it."""
        ...

    @property
    def children(self) -> Sequence[Frame]:
        """Frames it called."""
        ...


def _in(fragment: str) -> Callable[[Frame], bool]:
    return lambda frame: fragment in (frame.file_path or "").replace("\\", "/")


def _parser(frame: Frame) -> bool:
    return _in("json/")(frame) or _in("syncd/codec.py")(frame)


# A frame's own time goes to the innermost frame on its stack that matches a stage.
STAGES: tuple[tuple[str, Callable[[Frame], bool]], ...] = (
    ("parse JSON", lambda f: f.function in {"loads", "raw_decode"} and _parser(f)),
    ("hash + serialise", lambda f: f.function in {"make_record", "canonical"}),
    ("map fields", lambda f: f.function == "to_record"),
    ("HTTP (aiohttp)", lambda f: f.function == "_send" or _in("aiohttp/")(f)),
    ("store calls (event-loop side)", lambda f: _in("aiosqlite/")(f) or _in("syncd/store/")(f)),
    ("idle (waiting on network or SQLite)", lambda f: f.function in {"select", "poll"}),
)
OTHER = "engine, asyncio, rest"


def stage_seconds(root: Frame) -> dict[str, float]:
    """Main-thread seconds per stage (time under no stage goes to `OTHER`)."""
    totals = {name: 0.0 for name, _ in STAGES}
    totals[OTHER] = 0.0
    pending: list[tuple[Frame, str]] = [(root, OTHER)]
    while pending:
        frame, inherited = pending.pop()
        stage = next((name for name, test in STAGES if test(frame)), inherited)
        # Own time: pyinstrument's total_self_time would count its "[self]" children twice.
        totals[stage] += frame.time - sum(child.time for child in frame.children)
        pending.extend((child, stage) for child in frame.children)
    return {name: round(seconds, 3) for name, seconds in totals.items()}

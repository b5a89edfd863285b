"""What a client process costs: wall time, CPU seconds of all its threads, peak RSS, and CPU pinning."""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Usage:
    """Wall and CPU seconds spent between `Meter.start()` and `Meter.stop()`."""

    wall_s: float
    cpu_s: float


class Meter:
    """Measures one stretch of work in this process (CPU counts every thread, e.g. aiosqlite's)."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = _cpu_seconds()

    def stop(self) -> Usage:
        """The wall and CPU seconds since the meter was created."""
        return Usage(time.monotonic() - self._wall, _cpu_seconds() - self._cpu)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of (the main thread, all other live threads), from /proc (Linux only).

    The split tells the event loop's work (HTTP, JSON, hashing) from the SQLite thread's.
    """
    task_dir = Path("/proc/self/task")
    if not task_dir.is_dir():
        return (0.0, 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for task in task_dir.iterdir():
        rest = _stat_fields(task / "stat")
        if rest is None:
            continue  # the thread ended meanwhile
        seconds = (int(rest[11]) + int(rest[12])) / tick
        if int(task.name) == os.getpid():
            main += seconds
        else:
            other += seconds
    return (main, other)


def _stat_fields(path: Path) -> list[str] | None:
    """The fields of a /proc `stat` file after the parenthesised name (the parent's pid is the
    2nd, utime and stime the 12th and 13th); None if the process or thread is gone."""
    try:
        stat = path.read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds so far of process `pid` (user + system), from /proc; None if it is gone."""
    rest = _stat_fields(Path(f"/proc/{pid}/stat"))
    if rest is None:
        return None
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def parent_pid(pid: int) -> int | None:
    """The parent of process `pid`, from /proc; None if it is gone (or not on this machine)."""
    rest = _stat_fields(Path(f"/proc/{pid}/stat"))
    return None if rest is None else int(rest[1])


def child_pids(parent: int) -> list[int]:
    """The live processes whose parent is `parent`, from /proc."""
    pids = (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    return [pid for pid in pids if parent_pid(pid) == parent]


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def pin_to_cpu(cpu: int | None) -> bool:
    """Run this process on one CPU only (so "one core" means one core); False if not possible."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def cpu_count() -> int:
    """CPUs this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1

"""Where and under what load the figures were taken: machine, interpreter, commit, load averages."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.measure import cpu_count


def _first_line_with(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def pressure() -> dict[str, float]:
    """Linux PSI: % of the last 60 s some task waited for CPU / for I/O (other tenants' load)."""
    out: dict[str, float] = {}
    for resource in ("cpu", "io"):
        try:
            some = Path(f"/proc/pressure/{resource}").read_text().splitlines()[0]
        except (OSError, IndexError):
            continue
        fields = dict(part.split("=") for part in some.split()[1:])
        out[f"{resource}_some_avg60"] = float(fields["avg60"])
    return out


def load() -> dict[str, Any]:
    """The machine's load right now."""
    one, five, fifteen = os.getloadavg()
    return {"loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)], **pressure()}


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed git arguments
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine(root: Path) -> dict[str, Any]:
    """The machine, interpreter and code the figures belong to."""
    mem = _first_line_with("/proc/meminfo", "MemTotal")
    # The code under test: results and the generated report change with every run.
    status = _git(
        root, "status", "--porcelain", "--", "syncd", "benchmarks", ":!benchmarks/results"
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _first_line_with("/proc/cpuinfo", "model name") or platform.processor(),
        "cpus": cpu_count(),
        "memory": mem,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "commit": _git(root, "rev-parse", "--short", "HEAD"),
        "dirty": bool(status),
    }

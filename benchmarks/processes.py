"""Child processes the harness drives: the emulator (a long-lived server) and one client run each."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from benchmarks.outcome import ClientOutcome

ROOT = Path(__file__).resolve().parent.parent


class HarnessError(RuntimeError):
    """A child process failed in a way that makes the measurement meaningless."""


class EmulatorProcess:
    """`benchmarks.emulator_proc` in a child process; use as a context manager."""

    def __init__(
        self,
        products: int,
        *,
        rate: float | None = None,
        burst: int | None = None,
        latency: float = 0.0,
        cpu: int | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self._argv = [sys.executable, "-m", "benchmarks.emulator_proc", "--products", str(products)]
        self._argv += ["--latency", str(latency), *(extra or [])]
        if rate is not None:
            self._argv += ["--rate", str(rate), "--burst", str(burst or max(1, round(rate)))]
        if cpu is not None:
            self._argv += ["--cpu", str(cpu)]
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token_url = ""

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            self._argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = self._read()
        self.url, self.token_url = ready["url"], ready["ims_token_url"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def command(self, line: str) -> dict[str, Any]:
        """Send one command and return its JSON answer."""
        proc = self._running()
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return self._read()

    def stats(self) -> dict[str, Any]:
        """Counters so far (requests, token_requests, rate_limited, cpu_s)."""
        return self.command("stats")

    def mutate(self, count: int) -> int:
        """Change `count` products now; returns how many were changed."""
        return int(self.command(f"mutate {count}")["mutated"])

    def _running(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise RuntimeError(
                "the emulator process is not running: use `with EmulatorProcess(...)`"
            )
        return self._proc

    def _read(self) -> dict[str, Any]:
        proc = self._running()
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise HarnessError(f"the emulator exited early (code {proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def _last_line(module: str, args: list[str], timeout: float) -> str:
    """Run `python -m module args...` to completion; the last line it printed (HarnessError with
    the tail of its stderr if it failed or printed nothing)."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise HarnessError(f"{module} exited with code {done.returncode}:\n{tail}")
    return lines[-1]


def run_client(module: str, args: list[str], timeout: float) -> tuple[ClientOutcome, float]:
    """Run a client to completion; the outcome it printed last, and the process's whole wall
    time (interpreter start-up, imports, opening and closing included)."""
    started = time.monotonic()
    line = _last_line(module, args, timeout)
    return ClientOutcome.from_json(line), time.monotonic() - started


def run_json(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run a module to completion and parse the JSON object it printed last."""
    answer: dict[str, Any] = json.loads(_last_line(module, args, timeout))
    return answer

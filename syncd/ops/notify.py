"""The sd_notify protocol, spoken over a plain datagram socket: READY, STATUS, WATCHDOG, STOPPING.

systemd passes `NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`) to a
`Type=notify` service, and `WATCHDOG_USEC` (+ `WATCHDOG_PID`) when `WatchdogSec=` is set. Without
`NOTIFY_SOCKET` every call here is a no-op, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from syncd.clock import Clock
from syncd.logging import get_logger

log = get_logger(__name__)


def socket_address(value: str) -> str | None:
    """The AF_UNIX address for a `NOTIFY_SOCKET` value; None for kinds this client does not speak."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux abstract namespace: a leading NUL instead of a path
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between keep-alive pings (half of `WATCHDOG_USEC`), or None if none are expected.

    `WATCHDOG_PID`, when set, names the process the manager watches; any other process stays quiet.
    """
    usec = env.get("WATCHDOG_USEC", "")
    watched = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if watched and (not watched.isdigit() or int(watched) != pid):
        return None
    return int(usec) / 1_000_000 / 2


class Notifier:
    """Sends state changes to the service manager; never raises, never blocks the event loop.

    Use as `async with Notifier.from_environ(os.environ) as notifier:`.
    """

    def __init__(self, notify_socket: str | None = None, watchdog: float | None = None) -> None:
        self._target = notify_socket
        self._address = socket_address(notify_socket) if notify_socket else None
        self.watchdog_interval = watchdog if self._address else None
        self._sock: socket.socket | None = None
        self._warned = False
        self.sent = 0

    @classmethod
    def from_environ(cls, env: Mapping[str, str], pid: int | None = None) -> Notifier:
        """A notifier for the socket and watchdog systemd described in `env`."""
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_interval(env, pid or os.getpid()))

    @property
    def enabled(self) -> bool:
        """True if there is a service manager to tell."""
        return self._address is not None

    async def __aenter__(self) -> Self:
        if self._target and self._address is None:
            log.warning(
                "notify.unsupported_socket",
                notify_socket=self._target,
                consequence="no readiness, status or watchdog notifications",
            )
        if self._address is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._sock = sock
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def send(self, **fields: str) -> bool:
        """Send one datagram of `KEY=value` lines; False (logged once) if it could not be sent."""
        if self._address is None:
            return False
        if self._sock is None:
            raise RuntimeError("Notifier is not open; use it inside 'async with Notifier(...)'")
        # One line per field: a newline inside a value would start a bogus assignment.
        payload = "\n".join(f"{k}={' '.join(v.splitlines())}" for k, v in fields.items())
        try:
            self._sock.sendto(payload.encode(), self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "notify.failed",
                    notify_socket=self._target,
                    error=exc.strerror or str(exc),
                    consequence="systemd may consider the service hung or not started",
                )
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        """Start-up is complete."""
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        """A one-line description shown by `systemctl status`."""
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        """One keep-alive ping."""
        return self.send(WATCHDOG="1")

    def stopping(self, status: str) -> bool:
        """Shutdown has begun."""
        return self.send(STOPPING="1", STATUS=status)

    async def keep_alive(self, clock: Clock) -> None:
        """Ping every `watchdog_interval` seconds, forever, from the event loop: a hung loop stops
        pinging and systemd restarts the service. Returns at once if no watchdog is configured."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.watchdog()
            await clock.sleep(interval)

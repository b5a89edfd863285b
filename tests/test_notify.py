"""sd_notify: READY, STATUS, WATCHDOG and STOPPING reach a fake systemd socket, in that order."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from syncd import cli
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.ops.notify import Notifier, socket_address, watchdog_interval
from syncd.runtime import Runtime
from tests.clocks import ManualClock, scheduler_on
from tests.support import adobe_source, settings_for, until

pytestmark = pytest.mark.timeout(30)
NEVER = "0 0 1 1 *"  # a cron slot a test never reaches: no run starts unless the test asks


class FakeSystemd:
    """A bound datagram socket standing in for the service manager's notification socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)
        self.received: list[dict[str, str]] = []

    def messages(self) -> list[dict[str, str]]:
        """Every datagram received so far, each parsed into its KEY=value fields."""
        while self.sock.fileno() != -1:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.received
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append(fields)
        return self.received

    def close(self) -> None:
        """Read what is left, then close."""
        self.messages()
        self.sock.close()

    def states(self) -> list[str]:
        """The state each message announced (READY, STATUS, WATCHDOG or STOPPING)."""
        return [next(k for k in ("READY", "WATCHDOG", "STOPPING", "STATUS") if k in m)
                for m in self.messages()]  # fmt: skip

    async def wait_for(self, key: str, count: int = 1) -> None:
        """Until `count` messages announcing `key` have arrived (bounded)."""
        await until(lambda: self.states().count(key) >= count)


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    """A fake notification socket on a path in tmp_path."""
    fake = FakeSystemd(str(tmp_path / "notify"))
    yield fake
    fake.close()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """A small catalog on loopback."""
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=30), seed=7)) as emulator:
        yield emulator


def test_socket_addresses_paths_and_abstract_names() -> None:
    """A path is used as is; '@name' is the abstract name '\\0name'; other kinds are refused."""
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@syncd/notify") == "\0syncd/notify"
    assert socket_address("vsock:2:1234") is None
    assert socket_address("@") is None


def test_watchdog_interval_is_half_the_timeout_for_the_watched_pid_only() -> None:
    """WATCHDOG_USEC=10s pings every 5 s, unless WATCHDOG_PID names another process."""
    env = {"WATCHDOG_USEC": "10000000"}
    assert watchdog_interval(env, pid=42) == 5.0
    assert watchdog_interval({**env, "WATCHDOG_PID": "42"}, pid=42) == 5.0
    assert watchdog_interval({**env, "WATCHDOG_PID": "43"}, pid=42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid=42) is None
    assert watchdog_interval({}, pid=42) is None


async def test_without_notify_socket_nothing_is_sent() -> None:
    """Outside systemd every notification is a quiet no-op."""
    async with Notifier.from_environ({}) as notifier:
        assert not notifier.enabled
        assert notifier.ready("up") is False and notifier.watchdog() is False
        assert notifier.watchdog_interval is None


async def test_fields_arrive_one_per_line(systemd: FakeSystemd, tmp_path: Path) -> None:
    """A datagram is KEY=value lines; a newline inside a value cannot forge another field."""
    async with Notifier(str(tmp_path / "notify")) as notifier:
        assert notifier.ready("line one\nWATCHDOG=1")
    assert systemd.messages() == [{"READY": "1", "STATUS": "line one WATCHDOG=1"}]


async def test_abstract_namespace_socket() -> None:
    """NOTIFY_SOCKET='@name' reaches a socket bound in the abstract namespace."""
    name = f"syncd-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    try:
        async with Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}) as notifier:
            notifier.stopping("bye")
        assert fake.messages() == [{"STOPPING": "1", "STATUS": "bye"}]
    finally:
        fake.close()


async def test_an_unreachable_socket_is_logged_once_and_never_raises(tmp_path: Path) -> None:
    """A manager that went away must not take the daemon down; one warning says so."""
    with capture_logs() as logs:
        async with Notifier(str(tmp_path / "gone")) as notifier:
            assert notifier.watchdog() is False
            assert notifier.watchdog() is False
    assert [e["event"] for e in logs] == ["notify.failed"]


async def test_keep_alive_pings_on_the_injected_clock(systemd: FakeSystemd, tmp_path: Path) -> None:
    """One ping at once, then one per interval of (fake) time, from the event loop."""
    clock = ManualClock()
    async with Notifier(str(tmp_path / "notify"), watchdog=5.0) as notifier:
        task = asyncio.create_task(notifier.keep_alive(clock))
        await systemd.wait_for("WATCHDOG", 1)
        clock.advance(4.9)
        await asyncio.sleep(0)
        assert systemd.states().count("WATCHDOG") == 1
        clock.advance(0.1)
        await systemd.wait_for("WATCHDOG", 2)
        task.cancel()
    assert clock.slept == [5.0, 5.0]


async def test_daemon_sends_ready_status_watchdog_stopping_in_order(
    systemd: FakeSystemd, tmp_path: Path, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY after the schedule is loaded, STATUS after the run, pings on the clock, STOPPING last."""
    clock = ManualClock(datetime(2026, 1, 1, 1, 30, tzinfo=UTC))
    scheduler_on(clock, monkeypatch)  # APScheduler's time too
    settings = settings_for(tmp_path / "s.db", adobe_source(emu, schedule="1h"))
    notifier = Notifier(str(tmp_path / "notify"), watchdog=10.0)
    async with Runtime(settings, clock) as runtime:
        async with Daemon(runtime, handle_signals=False, notifier=notifier) as daemon:
            first = systemd.messages()[0]
            assert first == {"READY": "1", "STATUS": "shop never run"}
            await until(lambda: bool(daemon.results))
            await until(lambda: any("succeeded" in m.get("STATUS", "") for m in systemd.messages()))
            pings = systemd.states().count("WATCHDOG")
            clock.advance(10.0)
            await systemd.wait_for("WATCHDOG", pings + 1)
        keys = systemd.states()
    assert keys[0] == "READY" and keys[-1] == "STOPPING"
    assert keys.index("READY") < keys.index("WATCHDOG") < keys.index("STOPPING")
    status = next(m["STATUS"] for m in systemd.received[1:] if "succeeded" in m.get("STATUS", ""))
    assert status.startswith("shop succeeded 20")
    assert systemd.received[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert len(keys) == notifier.sent


class Recording(Notifier):
    """A notifier that also takes a snapshot of the daemon at each message it sends."""

    def __init__(self, notify_socket: str, watchdog: float | None = None) -> None:
        super().__init__(notify_socket, watchdog)
        self.snapshot: Callable[[], object] = lambda: None
        self.seen: list[tuple[dict[str, str], object]] = []

    def send(self, **fields: str) -> bool:
        self.seen.append((fields, self.snapshot()))
        return super().send(**fields)

    def at(self, key: str) -> object:
        """The snapshot taken when the first message announcing `key` was sent."""
        return next(snap for fields, snap in self.seen if key in fields)


async def test_ready_is_sent_only_once_every_job_is_scheduled(
    systemd: FakeSystemd, tmp_path: Path, emu: Emulator
) -> None:
    """At the moment READY=1 leaves, both jobs of the source exist and the scheduler runs."""
    source = adobe_source(emu, schedule=NEVER, full_schedule="0 3 * * *")
    notifier = Recording(str(tmp_path / "notify"))
    async with Runtime(settings_for(tmp_path / "r.db", source)) as runtime:
        daemon = Daemon(runtime, handle_signals=False, notifier=notifier)
        notifier.snapshot = lambda: (
            daemon.next_run("shop") is not None,
            daemon.next_run("shop:full") is not None,
            daemon.monitor.liveness().ok,
        )
        async with daemon:
            assert systemd.states() == ["READY"]
    assert notifier.at("READY") == (True, True, True)


async def test_stopping_is_sent_before_the_drain_of_a_running_sync(
    systemd: FakeSystemd, tmp_path: Path
) -> None:
    """Stopped mid-run: STOPPING=1 (saying one run drains) leaves before that run's
    sync.finished, which is logged afterwards as cancelled."""
    config = EmulatorConfig(adobe=AdobeConfig(products=300, latency=0.01), seed=7)
    async with Emulator(config) as slow:
        source = adobe_source(slow, schedule="1h", max_concurrency=2)
        settings = settings_for(tmp_path / "d.db", source, shutdown_grace=0.0)
        notifier = Recording(str(tmp_path / "notify"))
        with capture_logs() as logs:
            async with Runtime(settings) as runtime:
                daemon = Daemon(runtime, handle_signals=False, notifier=notifier)
                notifier.snapshot = lambda: [e["event"] for e in logs]
                async with daemon:
                    await until(lambda: any(e["event"] == "sync.started" for e in logs))
                    daemon.stop()
    at_stopping = notifier.at("STOPPING")
    assert isinstance(at_stopping, list)
    assert "sync.started" in at_stopping and "sync.finished" not in at_stopping
    assert systemd.messages()[-1] == {"STOPPING": "1", "STATUS": "stopping: draining 1 run(s)"}
    (finished,) = [e for e in logs if e["event"] == "sync.finished"]
    assert finished["status"] == "cancelled"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_syncd_run_under_a_fake_systemd(
    tmp_path: Path, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real process: READY, pings every WATCHDOG_USEC/2, a healthy listener, STOPPING on
    SIGTERM and exit 0; afterwards `syncd healthcheck` fails."""
    name = f"syncd-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    port = free_port()
    adobe = emu.adobe.config
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"""
log_format = "json"
[store]
path = "{tmp_path / "syncd.db"}"
[health]
enabled = true
port = {port}
[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "{emu.url}"
schedule = "1h"
[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
org_id = "{adobe.org_id}"
"""
    )
    # `syncd healthcheck` reads the same configuration as the daemon, secrets included.
    monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", adobe.client_secret)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": "@" + name,
        "WATCHDOG_USEC": "100000",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "syncd", "--config", str(config), "run",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await until(lambda: "READY" in fake.states(), limit=20)
        await until(lambda: any("succeeded" in m.get("STATUS", "") for m in fake.messages()))
        await until(lambda: fake.states().count("WATCHDOG") >= 3)
        args = ["--config", str(config), "healthcheck"]
        assert await asyncio.to_thread(cli.main, args) == 0
        assert await asyncio.to_thread(cli.main, [*args, "--ready"]) == 0
        # A hung event loop (here: a stopped process) answers nothing: unhealthy, not a hang.
        proc.send_signal(signal.SIGSTOP)
        try:
            assert await asyncio.to_thread(cli.main, [*args, "--timeout", "0.3"]) == 1
        finally:
            proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        fake.close()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    keys = fake.states()
    assert keys[0] == "READY" and "STOPPING" in keys
    assert keys.index("STOPPING") > keys.index("WATCHDOG")
    assert b'"health.listening"' in stderr
    assert await asyncio.to_thread(cli.main, args) == 1


async def test_an_unsupported_socket_kind_is_said_once_and_ignored() -> None:
    """A vsock address (newer systemd in VMs) disables notifications with one warning."""
    with capture_logs() as logs:
        async with Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}) as notifier:
            assert not notifier.enabled and notifier.ready("up") is False
    assert [(e["event"], e["notify_socket"]) for e in logs] == [
        ("notify.unsupported_socket", "vsock:2:1234")
    ]

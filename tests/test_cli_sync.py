"""`syncd sync SOURCE` end to end against the emulator: exit codes, the progress bar and readable
logs on a terminal, plain output elsewhere."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.store import SqliteStore
from tests.support import query

CONFIG = """
[store]
path = "{db}"
[http]
max_attempts = 2
backoff_base = 0.001
backoff_cap = 0.01
[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "{url}"
page_size = 10
max_concurrency = 2
[sources.auth]
token_url = "{token_url}"
client_id = "{client_id}"
org_id = "{org_id}"
"""
ANSI = re.compile(r"\x1b\[[0-9;]*[mK]")


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An Adobe store of 30 products (3 pages of 10) on a free loopback port."""
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=30))) as emu:
        yield emu


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file for source `shop` aimed at the emulator; its secret comes from the env."""
    adobe = emulator.adobe.config
    monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", adobe.client_secret)
    path = tmp_path / "syncd.toml"
    path.write_text(
        CONFIG.format(
            db=tmp_path / "syncd.db",
            url=emulator.url,
            token_url=emulator.ims_token_url,
            client_id=adobe.client_id,
            org_id=adobe.org_id,
        )
    )
    return path


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` with `new` in the file at `path`."""
    path.write_text(path.read_text().replace(old, new))


async def syncd(*argv: str) -> int:
    """Run the CLI in a thread: it owns an event loop, and the emulator serves on this one."""
    return await asyncio.to_thread(main, list(argv))


async def test_a_successful_sync_exits_0(
    config: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every product stored, the summary on stdout, exit 0."""
    assert await syncd("--log-level", "warning", "--config", str(config), "sync", "shop") == 0
    out, err = capsys.readouterr()
    assert out.startswith("sync shop: succeeded") and "30 seen: 30 new" in out
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    db = config.parent / "syncd.db"
    assert query(db, "SELECT status, items_seen FROM sync_runs") == [("succeeded", 30)]


async def test_a_failed_run_exits_1(
    config: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API answering 500 to everything: the run is recorded as failed and the exit code is 1."""
    emulator.adobe.faults.add(Fault(kind="status", status=500, times=None))
    assert await syncd("--log-level", "error", "--config", str(config), "sync", "shop") == 1
    out, _ = capsys.readouterr()
    assert out.startswith("sync shop: failed")
    db = config.parent / "syncd.db"
    assert query(db, "SELECT status FROM sync_runs") == [("failed",)]


async def test_a_source_waiting_for_reauth_exits_1_without_a_request(
    config: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """needs_reauth: exit 1 with the command to run, and neither the API nor IMS is called."""
    async with SqliteStore(config.parent / "syncd.db") as store:
        await store.set_needs_reauth("shop", "the grant was revoked", emulator.clock.now())
    assert await syncd("--config", str(config), "sync", "shop") == 1
    assert capsys.readouterr().err == (
        "syncd: error: source 'shop' needs re-authorisation (the grant was revoked); "
        "run 'syncd auth shop'\n"
    )
    assert (emulator.adobe.stats.requests, emulator.adobe.stats.token_requests) == (0, 0)


async def test_an_unknown_source_or_a_bad_config_exits_2(
    config: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the source name, or an invalid key: exit 2, one line, nothing sent."""
    assert await syncd("--config", str(config), "sync", "shpo") == 2
    assert capsys.readouterr().err == (
        "syncd: config error: source 'shpo' is not configured (known: shop)\n"
    )
    edit(config, "page_size = 10", "page_size = 0")
    assert await syncd("--config", str(config), "sync", "shop") == 2
    assert capsys.readouterr().err == (
        "syncd: config error: sources[0] (shop).page_size: 0 is invalid: Input should be "
        "greater than or equal to 1\n"
    )
    assert emulator.adobe.stats.requests == 0


async def test_on_a_terminal_a_progress_bar_and_readable_logs(
    config: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stderr a terminal: the bar redraws in place to 3/3 pages and ends its line; log lines are
    console text that start on a line of their own, never appended to the bar."""
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert await syncd("--config", str(config), "sync", "shop") == 0
    raw = terminal.getvalue()
    bars = re.findall(
        r"\r\x1b\[K(shop \[[#-]{30}\] \d/3 pages, \d+ products)"
        r"((?:, [\d,]+ products/s)?, \d+:\d\d elapsed(?:, ETA \d+:\d\d)?)(\n?)",
        raw,
    )
    assert [text.split("] ")[1] for text, _, _ in bars] == [
        "1/3 pages, 10 products", "2/3 pages, 20 products", "3/3 pages, 30 products",
    ]  # fmt: skip
    assert [end for _, _, end in bars] == ["", "", "\n"]
    assert ["ETA" in timing for _, timing, _ in bars] == [True, True, False]
    (finished,) = [line for line in ANSI.sub("", raw).split("\n") if "sync.finished" in line]
    assert re.match(r"^\r\d{4}-\d\d-\d\dT[^ ]+Z \[info +\] sync\.finished ", finished)
    assert "items_seen=30" in finished and "source=shop" in finished
    with pytest.raises(json.JSONDecodeError):
        json.loads(finished)


def test_the_progress_bar_is_silent_off_a_terminal_and_closes_its_line() -> None:
    """A pipe gets nothing; without a known page count, close() leaves the last state on its line."""
    from syncd.commands.output import ProgressBar

    pipe = io.StringIO()
    bar = ProgressBar(pipe, "shop")
    bar(1, 3, 10)
    bar.close()
    assert pipe.getvalue() == ""
    terminal = Terminal()
    now = [100.0]
    bar = ProgressBar(terminal, "shop", monotonic=lambda: now[0])
    bar(1, None, 10)
    now[0] += 3
    bar(2, None, 15)
    terminal.write("\r\x1b[Ka log line that erased the bar\n")
    bar.close()
    bar.close()
    assert terminal.getvalue().split("\n")[1:] == [
        "\r\x1b[Kshop 2 pages, 15 products, 5 products/s, 0:03 elapsed",
        "",
    ]


def test_the_progress_bar_shows_rate_elapsed_time_and_eta() -> None:
    """With a known page count: products/s, elapsed time and the time left at the pace so far;
    no ETA once the last page is in."""
    from syncd.commands.output import ProgressBar

    terminal = Terminal()
    now = [0.0]
    bar = ProgressBar(terminal, "shop", monotonic=lambda: now[0])
    now[0] = 0.0
    bar(0, 40, 0)
    now[0] = 50.0
    bar(10, 40, 1000)
    now[0] = 4000.0
    bar(40, 40, 4000)
    lines = [line.rsplit("] ", 1)[1] for line in terminal.getvalue().split("\r\x1b[K")[1:]]
    assert lines == [
        "0/40 pages, 0 products, 0:00 elapsed",
        "10/40 pages, 1000 products, 20 products/s, 0:50 elapsed, ETA 2:30",
        "40/40 pages, 4000 products, 1 products/s, 1:06:40 elapsed\n",
    ]

"""Issue 12's table replayed: each hostile answer against a child `syncd` process, and what it cost.

    python -m benchmarks.hostile [--products 2000] [--out benchmarks/results/hostile.md]

The emulators run in this process on loopback: the store's (Adobe IMS + Commerce, and an
AmeriCommerce store on a static token) and "another origin" that a redirect points at. Each case
starts from a good first sync (`syncd sync SOURCE --full`, a child process, on its own fresh
database), arms its fault, runs `syncd --log-level debug --log-format json sync SOURCE --full` as a
child again, and prints one row: its exit code and last line, whether a credential leaked (any
request at the other origin; the client secret, a token the IMS issued or the static token in the
child's stderr, in any text column of the database but the stored tokens themselves, or in
`syncd status/runs/events --json`), the live products tombstoned (those the catalog still has),
the products stored before the fault that are gone or changed (the catalog did not change), the
child's peak RSS (its own `ru_maxrss`), the wall time, and `PRAGMA integrity_check`.

The database deleted or replaced is replayed under `syncd run` (shop every 2 s, its health
listener on): /readyz asked after two periods, SIGTERM, then a restart's `syncd sync`. A wall clock
stepped back cannot be made for a child process without privileges: that row names the fault
suite's scenario of docs/RELIABILITY.md that replays it (on the lab's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig, Fault

MB = 1000 * 1000
STATIC_TOKEN = "hostile-replay-static-token-000000000001"  # noqa: S105 - the emulator's fake
CLIENT_SECRET = "hostile-replay-client-secret-00000000001"  # noqa: S105 - the emulator's fake
RSS_LIMIT_MB = 300
WALL_LIMIT_S = 60


@dataclass(frozen=True, slots=True)
class World:
    """The store's emulator, the other origin, and a store whose tokens live 3 seconds."""

    emu: Emulator
    other: Emulator
    short: Emulator


@dataclass(frozen=True, slots=True)
class Case:
    """One row of the issue's table: the fault armed before the second run of `source`."""

    name: str
    arm: Callable[[World], None] | None = None
    source: str = "shop"
    mode: str = "faulted"  # "twins": two children at once on a fresh file; "sigterm"
    on_short: bool = False  # on the emulator whose tokens live 3 seconds
    notes: dict[str, str] = field(default_factory=dict)


def _adobe(fault: Fault) -> Callable[[World], None]:
    def arm(world: World) -> None:
        world.emu.adobe.revoke_tokens()  # so that the token path is exercised too
        world.emu.adobe.faults.add(fault)

    return arm


def _to_other(target: str, status: int) -> Callable[[World], None]:
    def arm(world: World) -> None:
        world.emu.adobe.revoke_tokens()
        world.emu.adobe.faults.add(
            Fault("redirect", target=target, status=status, location=world.other.url, times=None)  # type: ignore[arg-type]
        )

    return arm


def _new_token(world: World) -> None:
    world.emu.adobe.revoke_tokens()  # a new token is fetched and stored under debug logging


def _ac_redirect(world: World) -> None:
    world.emu.americommerce.faults.add(
        Fault("redirect", status=302, location=world.other.url, times=None)
    )


def _queued(world: World) -> None:
    world.short.adobe.faults.add(Fault("status", status=429, retry_after="4", after=2))


CASES: tuple[Case, ...] = (
    Case("token endpoint answered 307 to another origin", _to_other("token", 307)),
    Case("AmeriCommerce API answered 302 to another origin", _ac_redirect, source="ac"),
    Case("Adobe API answered 302 to another origin", _to_other("api", 302)),
    Case(
        "an IMS 500 body echoes the client secret",
        _adobe(Fault("echo", target="token", status=500, times=None)),
    ),
    Case(
        "an IMS 400 body echoes the client secret",
        _adobe(Fault("echo", target="token", status=400, body="invalid_request", times=None)),
    ),
    Case("an API 503 body echoes the bearer token", _adobe(Fault("echo", status=503, times=None))),
    Case("--log-level debug (no fault: a new token is fetched and stored)", _new_token),
    Case("a middle page empty, same total_count", _adobe(Fault("empty_page", page=6))),
    Case("a middle page short, same total_count", _adobe(Fault("short_page", page=6))),
    Case("the same sku on two pages", _adobe(Fault("duplicate_sku", page=6))),
    Case("a 200 MB body", _adobe(Fault("oversized", size=200 * MB, times=None))),
    Case("total_count 10^12", _adobe(Fault("huge_total", times=None))),
    Case("total_count 10^9 with empty pages", _adobe(Fault("huge_total", total=10**9, times=None))),
    Case("100,000-level nested JSON", _adobe(Fault("nested", times=None))),
    Case("Retry-After: ²", _adobe(Fault("status", status=429, retry_after="²", after=3))),
    Case("the database file deleted under `syncd run`", mode="deleted"),
    Case("the database file replaced by a backup under `syncd run`", mode="replaced"),
    Case("two `syncd sync` started on a fresh database", mode="twins"),
    Case("SIGTERM to `syncd sync`", mode="sigterm"),
    Case(
        "a token that expired while its request waited (tokens live 3 s, Retry-After: 4)",
        _queued,
        on_short=True,
    ),
)

IN_PROCESS_ONLY = (("the wall clock stepped back 10 minutes", "clock-stepped-back"),)


def config_text(world: World, db: Path, short: bool, health: int | None = None) -> str:
    """A TOML configuration: `shop` (Adobe) and `ac` (AmeriCommerce) on the store's emulator;
    with `health`, the daemon's listener on that port and `shop` every 2 s (`ac` disabled)."""
    emu = world.short if short else world.emu
    adobe = emu.adobe.config
    listener = f"[health]\nenabled = true\nport = {health}\n" if health else ""
    often = 'schedule = "2s"\n' if health else ""
    quiet = "enabled = false\n" if health else ""
    return f"""
log_format = "json"
{listener}[store]
path = "{db}"
[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "{emu.url}"
page_size = 100
{often}[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
client_secret = "{adobe.client_secret}"
org_id = "{adobe.org_id}"
refresh_margin = 0
[[sources]]
name = "ac"
kind = "americommerce"
base_url = "{world.emu.url}"
page_size = 100
{quiet}[sources.auth]
static_token = "{STATIC_TOKEN}"
"""


# The child reports its own peak RSS (ru_maxrss of RUSAGE_SELF, KiB on Linux) as its last line.
_CHILD = (
    "import resource, sys\n"
    "from syncd.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@dataclass(frozen=True, slots=True)
class Ran:
    """One child `syncd`: exit code, wall seconds, peak RSS (MB), stdout and stderr."""

    code: int
    wall: float
    rss: float
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """What the run said: `syncd sync`'s summary and its error, else stderr's last line."""
        out = [line.strip() for line in self.out.splitlines() if line.strip()]
        if out:
            errors = [
                line.removeprefix("error").strip() for line in out if line.startswith("error")
            ]
            return "; ".join([out[0], *errors])[:240]
        lines = [line for line in self.err.splitlines() if line.strip()]
        plain = [line for line in lines if not line.startswith("{")]
        return (plain or lines or [""])[-1][:240]


async def start(config: Path, *args: str) -> asyncio.subprocess.Process:
    """A child `syncd --config config ARGS` reporting its peak RSS."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(child: asyncio.subprocess.Process, started: float) -> Ran:
    """Wait for `child`; what it did."""
    out, err = await child.communicate()
    text = err.decode(errors="replace")
    lines = text.rstrip("\n").splitlines()
    rss = float("nan")
    if lines and lines[-1].startswith("peak_rss_kib "):
        rss = float(lines.pop().split()[1]) / 1024
    return Ran(
        child.returncode or 0,
        time.perf_counter() - started,
        rss,
        out.decode(errors="replace"),
        "\n".join(lines),
    )


async def run(config: Path, *args: str) -> Ran:
    """A child `syncd` to its end."""
    started = time.perf_counter()
    return await finish(await start(config, *args), started)


def free_port() -> int:
    """A loopback port nobody listens on (for the daemon's health listener)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def succeeded_runs(db: Path) -> int:
    """Runs recorded `succeeded` (0 while the file is not there yet)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(
                conn.execute(
                    "SELECT count(*) FROM sync_runs WHERE status = 'succeeded'"
                ).fetchone()[0]
            )
    except sqlite3.Error:
        return 0


def remove(db: Path) -> None:
    """`rm syncd.db*`: the file, its -wal and -shm (the run locks' directory aside)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def backup(db: Path, to: Path) -> None:
    """A self-contained copy of `db` (what last night's backup is)."""
    with sqlite3.connect(db) as live, sqlite3.connect(to) as copy:
        live.backup(copy)
    with sqlite3.connect(to) as copy:
        copy.execute("PRAGMA journal_mode=DELETE")


async def under_the_daemon(
    mode: str, config: Path, db: Path, port: int
) -> tuple[list[Ran], str, dict[str, str]]:
    """`syncd run` (shop every 2 s) until its first run succeeded; its database deleted or
    replaced by a backup; /readyz asked after two more periods; SIGTERM; then a restart's
    `syncd sync shop --full`. Returns both children, the outcome and the products before."""
    started = time.perf_counter()
    daemon = await start(config, "--log-level", "debug", "run")
    async with asyncio.timeout(30):
        while succeeded_runs(db) < 1:  # noqa: ASYNC110 - the child's database
            await asyncio.sleep(0.05)
    before = live(db, "shop")
    if mode == "deleted":
        await asyncio.to_thread(remove, db)
    else:
        copy = db.with_suffix(".backup")
        await asyncio.to_thread(backup, db, copy)
        os.replace(copy, db)
    await asyncio.sleep(4.5)  # two periods: two runs the daemon must refuse
    written = mode == "deleted" and await asyncio.to_thread(db.exists)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as answer,
    ):
        ready = f"/readyz {answer.status}"
    daemon.send_signal(signal.SIGTERM)
    stopped = await finish(daemon, started)
    noticed = stopped.err.count('"store.file_changed"')
    restarted = await run(config, "sync", "shop", "--full")
    outcome = (
        f"{ready}; store.file_changed logged {noticed}x; "
        f"{'a new file written by the old daemon; ' if written else ''}"
        f"daemon exit {stopped.code}; restarted: exit {restarted.code}: {restarted.last_line}"
    )
    return [stopped, restarted], outcome, before if mode == "replaced" else {}


def texts(db: Path) -> str:
    """Every text value of every table but the stored tokens themselves."""
    found: list[str] = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]:
                if table == "tokens" and column in ("access_token", "refresh_token"):
                    continue
                query = f"SELECT {column} FROM {table} WHERE typeof({column}) = 'text'"
                found.extend(str(row[0]) for row in conn.execute(query))
    return "\n".join(found)


def tombstoned_live(db: Path, world: World, source: str, short: bool) -> int:
    """Products marked deleted that the catalog still has."""
    emu = world.short if short else world.emu
    catalog = (emu.adobe if source == "shop" else emu.americommerce).catalog.snapshot()
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT sku FROM products WHERE source = ? AND deleted_at IS NOT NULL", (source,)
        ).fetchall()
    return sum(sku in catalog for (sku,) in rows)


def live(db: Path, source: str) -> dict[str, str]:
    """sku -> stored payload of the live products of `source`."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT sku, payload FROM products WHERE source = ? AND deleted_at IS NULL", (source,)
        ).fetchall()
    return {str(sku): str(payload) for sku, payload in rows}


def integrity(db: Path) -> str:
    """SQLite's verdict on the file."""
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def other_requests(world: World) -> int:
    """Every request the other origin received, on either platform."""
    a, c = world.other.adobe.stats, world.other.americommerce.stats
    return a.requests + a.token_requests + c.requests + c.token_requests


def secrets(world: World) -> dict[str, str]:
    """The credentials by what they are."""
    found = {"client secret": CLIENT_SECRET, "static token": STATIC_TOKEN}
    for emu in (world.emu, world.short):
        found.update({f"token {t[:6]}…": t for t in emu.adobe.ims.tokens})
    return found


async def leaks(world: World, config: Path, db: Path, ran: list[Ran], before: int) -> list[str]:
    """Where a credential went: the other origin, stderr, the database, the CLI's JSON."""
    sinks = {"stderr": "\n".join(r.err for r in ran), "database": texts(db)}
    for command in ("status", "runs", "events"):
        shown = await run(config, command, "--json")
        sinks[f"{command} --json"] = shown.out + shown.err
    found = [
        f"{kind} in {sink}"
        for kind, secret in secrets(world).items()
        for sink, text in sinks.items()
        if secret in text
    ]
    if other_requests(world) > before:
        found.append(f"{other_requests(world) - before} requests to the other origin")
    return found


async def replay(case: Case, world: World, tmp: Path, n: int) -> str:
    """One row of the table."""
    db, config = tmp / f"case{n}.db", tmp / f"case{n}.toml"
    config.write_text(config_text(world, db, case.on_short), encoding="utf-8")
    for emu in (world.emu, world.short):
        emu.adobe.faults.clear()
        emu.americommerce.faults.clear()
    debug = ("--log-level", "debug", "--log-format", "json")
    asked = other_requests(world)
    before: dict[str, str] = {}
    if case.mode in ("deleted", "replaced"):
        port = free_port()
        config.write_text(config_text(world, db, case.on_short, health=port), encoding="utf-8")
        ran, outcome, before = await under_the_daemon(case.mode, config, db, port)
    elif case.mode == "twins":
        started = time.perf_counter()
        children = [await start(config, *debug, "sync", "shop", "--full") for _ in range(2)]
        ran = list(await asyncio.gather(*(finish(c, started) for c in children)))
        outcome = " / ".join(f"exit {r.code}: {r.last_line}" for r in ran)
    else:
        first = await run(config, "sync", case.source, "--full")
        if first.code != 0:
            return f"| {case.name} | first sync failed: {first.last_line} |" + " |" * 7
        before = live(db, case.source)
        if case.arm is not None:
            case.arm(world)
        if case.mode == "sigterm":
            world.emu.adobe.faults.add(Fault("slow", delay=0.05, times=None))
            served = world.emu.adobe.stats.requests
            started = time.perf_counter()
            child = await start(config, *debug, "sync", case.source, "--full")
            while world.emu.adobe.stats.requests < served + 5:  # noqa: ASYNC110 - a counter
                await asyncio.sleep(0.01)
            child.send_signal(signal.SIGTERM)
            ran = [await finish(child, started)]
            with sqlite3.connect(db) as conn:
                status = conn.execute(
                    "SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"
                ).fetchone()[0]
            outcome = f"exit {ran[0].code}, run {status}: {ran[0].last_line}"
        else:
            stats = world.short.adobe.stats
            refused = stats.unauthorized + stats.expired_token_requests
            ran = [await run(config, *debug, "sync", case.source, "--full")]
            outcome = f"exit {ran[0].code}: {ran[0].last_line}"
            if case.on_short:
                refused = stats.unauthorized + stats.expired_token_requests - refused
                outcome += f" ({refused} answered 401)"
    for emu in (world.emu, world.short):
        emu.adobe.faults.clear()
        emu.americommerce.faults.clear()
    leaked = await leaks(world, config, db, ran, asked)
    after = live(db, case.source)
    lost = sum(after.get(sku) != payload for sku, payload in before.items())
    tombstoned = tombstoned_live(db, world, case.source, case.on_short)
    rss = max(r.rss for r in ran)
    wall = max(r.wall for r in ran)
    verdict = (
        "ok"
        if not leaked and not tombstoned and not lost and rss < RSS_LIMIT_MB and wall < WALL_LIMIT_S
        and "Traceback" not in "".join(r.err for r in ran)
        and "internal error" not in outcome
        else "**FAIL**"
    )  # fmt: skip
    cells = (
        case.name,
        "`" + outcome.replace("|", "/").replace("`", "'") + "`",
        "; ".join(leaked) or "none",
        tombstoned,
        lost if before else "n/a (fresh file)",
        f"{rss:.0f}",
        f"{wall:.1f}",
        integrity(db),
        verdict,
    )
    return "| " + " | ".join(str(c) for c in cells) + " |"


async def main(products: int, only: str = "") -> tuple[int, list[str]]:
    """Print the table; 1 if a row failed (else 0), and the table's lines."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"python -m benchmarks.hostile --products {products}"
    rows = [
        f"Measured {when} with `{command}` ({os.cpu_count()} CPUs). Verdict `ok`: no credential "
        "leaked, no live product tombstoned, no product stored before lost or changed, "
        f"peak RSS under {RSS_LIMIT_MB} MB, wall under "
        f"{WALL_LIMIT_S} s, no traceback or internal error.",
        "",
        "| what the server did | outcome (exit code: summary; error) | credential leaked | live "
        "products tombstoned | earlier products lost or changed | peak RSS MB | wall s | "
        "integrity_check | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        print(row)
    failed = 0
    adobe = AdobeConfig(products=products, client_secret=CLIENT_SECRET)
    ac = AmeriCommerceConfig(products=products // 4, static_tokens=(STATIC_TOKEN,))
    with tempfile.TemporaryDirectory() as scratch:
        async with (
            Emulator(EmulatorConfig(adobe=adobe, americommerce=ac, seed=1)) as emu,
            Emulator(EmulatorConfig(adobe=AdobeConfig(products=1), seed=2)) as other,
            Emulator(
                EmulatorConfig(
                    adobe=AdobeConfig(
                        products=products // 4, client_secret=CLIENT_SECRET, token_lifetime=3
                    ),
                    seed=3,
                )
            ) as short,
        ):
            world = World(emu, other, short)
            for n, case in enumerate(CASES):
                if only not in case.name:
                    continue
                row = await replay(case, world, Path(scratch), n)
                failed += "**FAIL**" in row
                rows.append(row)
                print(row, flush=True)
    for name, scenario in IN_PROCESS_ONLY:
        rows.append(
            f"| {name} | not replayed in a child: fault suite scenario `{scenario}` |" + " |" * 7
        )
        print(rows[-1])
    return (1 if failed else 0), rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    parser.add_argument("--only", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    code, table = asyncio.run(main(args.products, args.only))
    if args.out is not None:
        args.out.write_text("\n".join(table) + "\n", encoding="utf-8")
    raise SystemExit(code)

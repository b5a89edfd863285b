"""Lease takeover time after `kill -9`: how long a dead replica's sources wait for a new owner.

    python -m benchmarks takeover [--kills 20] [--lease 2] [--poll 0.2] [--replicas 3]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Real `syncd run` replicas share one fresh PostgreSQL database and an in-process emulator whose
slow catalog keeps scans going. Each round: wait until some replica holds a live lease, `kill -9`
it, and time (from just after the kill returns) until every source it held is claimed by another
replica (the lease row's epoch moves); then start a replacement so the fleet stays the same size.
Every replica has a slot for every source, so a takeover never waits for capacity. The bound is
`lease_seconds + poll_interval` (the lease runs out between renewals: a third of the
lease before it at most). Writes `results/takeover-kill9.json`; docs/SCALING.md quotes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg

from benchmarks.environment import load, machine
from benchmarks.processes import ROOT
from benchmarks.runner import Say
from benchmarks.stores import scratch_database
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig

RESULT = ROOT / "benchmarks" / "results" / "takeover-kill9.json"
SOURCES = [f"s{i}" for i in range(6)]


def _config(folder: Path, emu: Emulator, url: str, lease: float, poll: float) -> Path:
    adobe = emu.adobe.config
    sources = "".join(
        f'\n[[sources]]\nname = "{n}"\nkind = "adobe_commerce"\nbase_url = "{emu.url}"\n'
        f'page_size = 10\nmax_concurrency = 1\nschedule = "1s"\n\n[sources.auth]\n'
        f'token_url = "{emu.ims_token_url}"\nclient_id = "{adobe.client_id}"\n'
        f'org_id = "{adobe.org_id}"\n'
        for n in SOURCES
    )
    path = folder / "syncd.toml"
    path.write_text(
        f'log_format = "json"\nlog_level = "warning"\nshutdown_grace = 0.5\n\n'
        f'[store]\nurl = "{url}"\npool_size = 2\n\n'
        f"[replica]\nlease_seconds = {lease}\npoll_interval = {poll}\nmax_concurrent_runs = {len(SOURCES)}\n"
        f"{sources}"
    )
    return path


async def _start(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in SOURCES:
        env[f"SYNCD_SECRET_{name.upper()}_CLIENT_SECRET"] = "syncd-emulator-secret"
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "--config", str(config), "run",
            env=env, stdout=out, stderr=out, cwd=ROOT,
        )  # fmt: skip


def _live_leases(url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            rows = conn.execute(
                "SELECT source, owner, epoch FROM leases WHERE owner IS NOT NULL "
                "AND expires_at > clock_timestamp() ORDER BY source"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [(str(s), str(o), int(e)) for s, o, e in rows]


async def _joined(url: str, pid: int) -> None:
    """Wait until the replica `pid` has registered (so every round starts at full strength)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM replicas WHERE pid = %s", (pid,)).fetchone():
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"replica {pid} did not join within 30 s")


def _epochs(url: str, sources: list[str]) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT source, epoch FROM leases WHERE source = ANY(%s)", (sources,)
        ).fetchall()
    return {str(s): int(e) for s, e in rows}


async def _measure(
    server: str, kills: int, lease: float, poll: float, size: int, say: Say
) -> dict[str, Any]:
    takeovers: list[float] = []
    with TemporaryDirectory() as tmp, scratch_database(server) as url:
        folder = Path(tmp)
        emu_config = EmulatorConfig(adobe=AdobeConfig(products=3000, latency=0.02), seed=1)
        async with Emulator(emu_config) as emu:
            config = _config(folder, emu, url, lease, poll)
            fleet = {}
            for i in range(size):
                proc = await _start(config, folder / f"r{i}.log")
                fleet[proc.pid] = proc
            try:
                for round_no in range(1, kills + 1):
                    held: list[tuple[str, str, int]] = []
                    deadline = time.monotonic() + 30
                    while not held and time.monotonic() < deadline:
                        held = _live_leases(url)
                        held = [h for h in held if int(h[1].split(":")[1]) in fleet]
                        if not held:
                            await asyncio.sleep(0.05)
                    if not held:
                        raise RuntimeError("no replica held a lease within 30 s")
                    victim_pid = int(held[0][1].split(":")[1])
                    victim_owner = held[0][1]
                    victim = fleet.pop(victim_pid)
                    sources = {s: e for s, o, e in held if o == victim_owner}
                    victim.send_signal(signal.SIGKILL)
                    await victim.wait()
                    killed = time.monotonic()
                    pending = dict(sources)
                    while pending:
                        now = _epochs(url, list(pending))
                        for source, epoch in list(pending.items()):
                            if now.get(source, epoch) > epoch:
                                takeovers.append(round(time.monotonic() - killed, 3))
                                del pending[source]
                        if time.monotonic() - killed > lease * 5 + 10:
                            raise RuntimeError(f"sources {sorted(pending)} were never claimed")
                        await asyncio.sleep(0.01)
                    say(
                        f"kill {round_no}/{kills}: {len(sources)} source(s) taken over "
                        f"in {takeovers[-len(sources) :]} s"
                    )
                    proc = await _start(config, folder / f"r{size + round_no}.log")
                    fleet[proc.pid] = proc
                    await _joined(url, proc.pid)
            finally:
                for proc in fleet.values():
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                for proc in fleet.values():
                    try:
                        await asyncio.wait_for(proc.wait(), 15)
                    except TimeoutError:
                        proc.kill()
    return {
        "kills": kills,
        "replicas": size,
        "sources": len(SOURCES),
        "lease_seconds": lease,
        "poll_interval": poll,
        "takeovers_s": takeovers,
        "median_s": round(statistics.median(takeovers), 3),
        "max_s": max(takeovers),
        "min_s": min(takeovers),
        "bound_s": lease + poll,
    }


def main(
    server: str, kills: int, lease: float, poll: float, size: int, command: str, say: Say
) -> Path:
    """Run the kills and write the JSON result; returns its path."""
    before = load()
    figures = asyncio.run(_measure(server, kills, lease, poll, size, say))
    document = {
        "command": command,
        "machine": machine(ROOT),
        "load_before": before,
        "load_after": load(),
        **figures,
    }
    RESULT.write_text(json.dumps(document, indent=2) + "\n")
    say(
        f"takeover after kill -9: median {figures['median_s']} s, max {figures['max_s']} s over "
        f"{len(figures['takeovers_s'])} sources in {kills} kills (bound {figures['bound_s']} s)"
    )
    return RESULT

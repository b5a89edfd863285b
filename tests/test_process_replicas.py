"""Real `syncd run` replicas on one PostgreSQL database and the emulator (docs/SCALING.md):
concurrent first start, one run per source at a time, `kill -9` and SIGSTOP past the lease,
replicas joining and leaving.

Every replica has the same configuration; they share the work by claiming leases. Leases are
short (2 s) and polls quick (0.2 s) so that takeovers happen within a test's few seconds. Each
source reads its own store view (`store_code`), so the emulator's request log tells the sources'
requests apart.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig
from syncd.store.postgres_schema import SCHEMA_VERSION
from tests.postgres_support import throwaway_database

pytestmark = pytest.mark.timeout(90)

LEASE_S, POLL_S = 2.0, 0.2


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """An empty database (no schema yet): the replicas create it, all at once."""
    with throwaway_database("syncd_replicas") as url:
        yield url


def write_config(
    tmp_path: Path, emu: Emulator, url: str, names: list[str], schedule: str, slots: int = 4
) -> Path:
    adobe = emu.adobe.config
    sources = "".join(
        f"""
[[sources]]
name = "{name}"
kind = "adobe_commerce"
base_url = "{emu.url}"
store_code = "{name}"
page_size = 10
max_concurrency = 2
schedule = "{schedule}"

[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
org_id = "{adobe.org_id}"
"""
        for name in names
    )
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"""
log_format = "json"
shutdown_grace = 0.5

[store]
url = "{url}"
pool_size = 3

[replica]
lease_seconds = {LEASE_S}
poll_interval = {POLL_S}
max_concurrent_runs = {slots}

[http]
max_attempts = 3
backoff_base = 0.01
{sources}"""
    )
    return path


class Replica:
    """One `syncd run` process, its log in a file (a pipe nobody reads would fill and block it)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"{name}"' in line:
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found


async def start(config: Path, names: list[str], log: Path) -> Replica:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in names:
        env[f"SYNCD_SECRET_{name.upper()}_CLIENT_SECRET"] = "syncd-emulator-secret"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "syncd", "--config", str(config), "run",
            env=env, stdout=out, stderr=out,
        )  # fmt: skip
    return Replica(proc, log)


def catalog(products: int, names: list[str], **more: Any) -> EmulatorConfig:
    """One catalog served under every source's store code."""
    return EmulatorConfig(adobe=AdobeConfig(products=products, store_codes=tuple(names), **more))


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        if replica.proc.returncode is None:
            replica.proc.kill()
            await replica.proc.wait()


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()
    except psycopg.errors.UndefinedTable:
        return []  # the replicas have not created the schema yet


async def until(predicate: Callable[[], bool], limit: float) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - polling another process's database rows
            await asyncio.sleep(0.05)


async def stop(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.proc.returncode is None:
            replica.proc.send_signal(signal.SIGCONT)
            replica.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        for replica in replicas:
            await replica.proc.wait()


def stored(url: str, source: str) -> dict[str, Any]:
    found = rows(
        url,
        "SELECT sku, payload::text FROM products WHERE source = %s AND deleted_at IS NULL",
        source,
    )
    return {sku: json.loads(payload) for sku, payload in found}


def dump(url: str, replicas: list[Replica]) -> None:
    """What a timed-out wait needs to be understood (shown by pytest on failure)."""
    print(rows(url, "SELECT * FROM leases ORDER BY source"))
    print(rows(url, "SELECT source, status, owner, pages FROM sync_runs ORDER BY id"))
    print(rows(url, "SELECT pid, application_name, state, left(query, 60) FROM pg_stat_activity "
               "WHERE datname = current_database()"))  # fmt: skip
    for replica in replicas:
        lines = replica.log.read_text(errors="replace").splitlines()
        errors = [line for line in lines if '"error"' in line][-20:]
        print(replica.pid, replica.proc.returncode, *errors, sep="\n")


def assert_no_overlapping_runs(url: str) -> None:
    """Per source, each run started after the one before it finished."""
    runs: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for source, started, finished in rows(
        url, "SELECT source, started_at, finished_at FROM sync_runs ORDER BY source, started_at"
    ):
        runs.setdefault(source, []).append((started, finished))
    for source, spans in runs.items():
        for (_, end), (start_next, _) in itertools.pairwise(spans):
            assert end is not None and end <= start_next, f"{source}: runs overlap: {spans}"


def assert_requests_within_one_run_each(url: str, emu: Emulator, names: list[str]) -> None:
    """The emulator's view: each request of a source arrived and was answered within one run of
    that source (as `sync_runs` records it), and no run asked for one page twice, as two scans
    of a source going on at once would (no faults are injected here, so nothing is retried)."""
    offset = time.time() - time.monotonic()  # the emulator runs in this process, on its clock
    slack = 0.005  # the rows' times are rounded to the microsecond; two clock reads apart
    runs: dict[str, list[tuple[float, float]]] = {}
    for source, started, finished in rows(
        url, "SELECT source, started_at, finished_at FROM sync_runs ORDER BY source, started_at"
    ):
        assert finished is not None, f"{source}: a run never finished"
        runs.setdefault(source, []).append((started.timestamp(), finished.timestamp()))
    asked: dict[tuple[str, int], list[str]] = {}
    seen = set()
    for record in emu.adobe.stats.log:
        parts = record.path.split("/")  # /rest/<store code>/V1/...
        if len(parts) < 3 or parts[1] != "rest" or parts[2] not in names:
            continue  # the IMS token endpoint
        source, began, ended = parts[2], record.began + offset, record.at + offset
        inside = [
            n for n, (start, end) in enumerate(runs.get(source, []))
            if start - slack <= began and ended <= end + slack
        ]  # fmt: skip
        assert len(inside) == 1, f"{source}: request at {began:.3f}-{ended:.3f} in runs {inside}"
        asked.setdefault((source, inside[0]), []).append(
            f"{record.path}?{sorted(record.query.items())}"
        )
        seen.add(source)
    assert seen == set(names)
    for (source, n), requests in asked.items():
        assert len(requests) == len(set(requests)), f"{source} run {n} asked twice: {requests}"


async def test_three_replicas_share_sources_without_overlap_from_a_cold_start(
    tmp_path: Path, fresh_db: str, replicas: list[Replica]
) -> None:
    """Three replicas start at once on an empty database: the schema is created once, every
    source is synced (exactly), no two runs of one source overlap (by their rows, and by the
    emulator's log of each source's requests), and the work is spread."""
    names = [f"s{i:02d}" for i in range(50)]
    async with Emulator(replace(catalog(40, names), seed=3)) as emu:
        config = write_config(tmp_path, emu, fresh_db, names, "2s")
        replicas.extend(
            await asyncio.gather(*(start(config, names, tmp_path / f"r{i}.log") for i in range(3)))
        )

        def each_synced_twice() -> bool:
            done = rows(
                fresh_db,
                "SELECT source, count(*) FROM sync_runs WHERE status = 'succeeded' "
                "GROUP BY source HAVING count(*) >= 2",
            )
            return len(done) == len(names)

        try:
            # 100 runs of three processes on two cores: under a loaded CI machine this took 45 s.
            await until(each_synced_twice, limit=75)
        except TimeoutError:
            dump(fresh_db, replicas)
            raise
        await stop(replicas)
        expected = emu.adobe.catalog.snapshot()
        assert len(emu.adobe.stats.log) < emu.adobe.stats.log_size  # nothing fell out of it
        assert_requests_within_one_run_each(fresh_db, emu, names)
    for replica in replicas:
        assert replica.proc.returncode == 0, replica.log.read_text()[-2000:]
    assert rows(fresh_db, "SELECT version FROM syncd_schema") == [(SCHEMA_VERSION,)]
    for name in names:
        assert stored(fresh_db, name) == expected, name
    assert rows(fresh_db, "SELECT count(*) FROM sync_runs WHERE status = 'failed'") == [(0,)]
    assert_no_overlapping_runs(fresh_db)
    owners = rows(fresh_db, "SELECT DISTINCT owner FROM sync_runs")
    assert len(owners) >= 2  # the pull spread the work (three replicas, four slots each)
    # A scheduled source ran no more often than its schedule (2 s) allows: coalesced, never doubled.
    for source, count, span in rows(
        fresh_db,
        "SELECT source, count(*), extract(epoch FROM max(started_at) - min(started_at)) "
        "FROM sync_runs GROUP BY source",
    ):
        assert count <= float(span) / 2 + 2, (source, count, span)


async def wait_for_a_running_scan(url: str, replicas: list[Replica]) -> tuple[Replica, str]:
    """A replica in the middle of a scan that has committed pages, and the source it scans."""
    by_pid = {replica.pid: replica for replica in replicas}
    found: list[tuple[str, str]] = []

    def scanning() -> bool:
        found[:] = rows(
            url,
            "SELECT owner, source FROM sync_runs WHERE status = 'running' AND pages >= 3 "
            "ORDER BY id LIMIT 1",
        )
        return bool(found)

    await until(scanning, limit=20)
    owner, source = found[0]
    return by_pid[int(owner.split(":")[1])], source


def slow_catalog(names: list[str]) -> EmulatorConfig:
    """300 products served slowly (10 ms a request): a scan lasts a few seconds."""
    return replace(catalog(300, names, latency=0.01), seed=9)


async def test_kill_9_of_a_replica_hands_its_sources_over_within_the_lease(
    tmp_path: Path, postgres_url: str, replicas: list[Replica]
) -> None:
    """`kill -9` mid-scan: another replica claims the source within lease + poll, fails the
    abandoned run naming the dead owner, resumes its checkpoint, and the data ends exact."""
    names = ["a", "b", "c", "d"]
    async with Emulator(slow_catalog(names)) as emu:
        config = write_config(tmp_path, emu, postgres_url, names, "1h")
        replicas.extend([await start(config, names, tmp_path / f"r{i}.log") for i in range(2)])
        victim, source = await wait_for_a_running_scan(postgres_url, replicas)
        (epoch,) = rows(postgres_url, "SELECT epoch FROM leases WHERE source = %s", source)[0]
        victim.proc.kill()
        await victim.proc.wait()
        killed_at = asyncio.get_running_loop().time()

        def taken_over() -> bool:
            return bool(
                rows(postgres_url, "SELECT 1 FROM leases WHERE source = %s AND epoch > %s",
                     source, epoch)
            )  # fmt: skip

        await until(taken_over, limit=LEASE_S + 10)
        takeover = asyncio.get_running_loop().time() - killed_at

        def all_done() -> bool:
            done = rows(
                postgres_url,
                "SELECT DISTINCT source FROM sync_runs WHERE status = 'succeeded'",
            )
            return len(done) == len(names)

        await until(all_done, limit=40)
        survivors = [r for r in replicas if r is not victim]
        await stop(survivors)
        expected = emu.adobe.catalog.snapshot()
    assert takeover <= LEASE_S + POLL_S + 1.0  # + the slack of this test's polling
    for name in names:
        assert stored(postgres_url, name) == expected, name
    assert rows(postgres_url, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") == [
        (0,)
    ]
    ((status, error),) = rows(
        postgres_url,
        "SELECT status, error FROM sync_runs WHERE source = %s ORDER BY id LIMIT 1",
        source,
    )
    assert status == "failed" and str(victim.pid) in error, error
    resumed = rows(
        postgres_url,
        "SELECT pages FROM sync_runs WHERE source = %s AND status = 'succeeded'",
        source,
    )
    assert resumed[0][0] < 30  # it resumed the checkpoint: fewer than the 30 pages of a scan
    assert_no_overlapping_runs(postgres_url)


async def test_a_replica_stopped_past_its_lease_is_fenced_and_gives_the_source_up(
    tmp_path: Path, postgres_url: str, replicas: list[Replica]
) -> None:
    """SIGSTOP mid-scan past the lease, another replica takes over, SIGCONT: the stopped
    replica's next write is refused by the fence, it logs that it gave the source up, and the
    data is exact."""
    names = ["a", "b"]
    async with Emulator(slow_catalog(names)) as emu:
        config = write_config(tmp_path, emu, postgres_url, names, "1h")
        replicas.extend([await start(config, names, tmp_path / f"r{i}.log") for i in range(2)])
        paused, source = await wait_for_a_running_scan(postgres_url, replicas)
        (epoch,) = rows(postgres_url, "SELECT epoch FROM leases WHERE source = %s", source)[0]
        paused.proc.send_signal(signal.SIGSTOP)

        def taken_over() -> bool:
            return bool(
                rows(postgres_url, "SELECT 1 FROM leases WHERE source = %s AND epoch > %s "
                     "AND owner NOT LIKE %s", source, epoch, f"%:{paused.pid}:%")
            )  # fmt: skip

        try:
            await until(taken_over, limit=LEASE_S + 10)
        except TimeoutError:
            dump(postgres_url, replicas)
            raise
        paused.proc.send_signal(signal.SIGCONT)

        def gave_up() -> bool:
            return any(e.get("source") == source for e in paused.events("lease.given_up")) or any(
                e.get("source") == source for e in paused.events("lease.lost")
            )

        await until(gave_up, limit=15)

        def all_done() -> bool:
            done = rows(
                postgres_url, "SELECT DISTINCT source FROM sync_runs WHERE status = 'succeeded'"
            )
            return len(done) == len(names)

        await until(all_done, limit=40)
        await stop(replicas)
        expected = emu.adobe.catalog.snapshot()
    given_up = [e for e in paused.events("lease.given_up") if e.get("source") == source]
    assert given_up, paused.log.read_text()[-3000:]
    # Refused by the fence, or its session ended by the server while it was stopped inside a
    # transaction (which freed the lease row): either way it wrote nothing more, and let go.
    assert any(
        word in given_up[0]["error"] for word in ("lost to", "expired", "no longer this replica")
    ), given_up
    # The paused run never closed as succeeded: its row was failed by the new owner.
    ((status, error),) = rows(
        postgres_url,
        "SELECT status, error FROM sync_runs WHERE source = %s ORDER BY id LIMIT 1",
        source,
    )
    assert status == "failed" and str(paused.pid) in error, error
    for name in names:
        assert stored(postgres_url, name) == expected, name
    assert_no_overlapping_runs(postgres_url)


def run_owners(url: str, since: datetime | None = None) -> dict[int, set[str]]:
    """pid -> the sources its replica ran successfully (runs started after `since`)."""
    found: dict[int, set[str]] = {}
    for owner, source in rows(
        url,
        "SELECT owner, source FROM sync_runs WHERE status = 'succeeded' "
        "AND started_at > coalesce(%s, '-infinity'::timestamptz)",
        since,
    ):
        found.setdefault(int(owner.split(":")[1]), set()).add(source)
    return found


def database_now(url: str) -> datetime:
    (now,) = rows(url, "SELECT clock_timestamp()")[0]
    assert isinstance(now, datetime)
    return now


async def test_replicas_joining_and_leaving_spread_the_sources(
    tmp_path: Path, postgres_url: str, replicas: list[Replica]
) -> None:
    """One replica alone runs every source; two more join with no configuration change and take
    sources as their leases come due (3 slots each, 9 sources); one leaves cleanly (SIGTERM): it
    leaves the registry, and the sources it ran go on being run by the others. The data ends
    exact and no two runs of a source overlap."""
    names = [f"j{i}" for i in range(9)]
    async with Emulator(replace(catalog(40, names), seed=5)) as emu:
        config = write_config(tmp_path, emu, postgres_url, names, "1s", slots=3)
        alone = await start(config, names, tmp_path / "r0.log")
        replicas.append(alone)
        try:
            await until(lambda: run_owners(postgres_url).get(alone.pid) == set(names), limit=20)
            assert set(run_owners(postgres_url)) == {alone.pid}
            joined_at = database_now(postgres_url)
            replicas.extend([await start(config, names, tmp_path / f"r{i}.log") for i in (1, 2)])
            pids = {replica.pid for replica in replicas}
            await until(lambda: set(run_owners(postgres_url, joined_at)) == pids, limit=20)
            assert len(rows(postgres_url, "SELECT id FROM replicas")) == 3
            leaving = replicas[1]
            leaving.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await leaving.proc.wait() == 0
            left_at = database_now(postgres_url)
            its_sources = run_owners(postgres_url, joined_at)[leaving.pid]
            stayed = pids - {leaving.pid}

            def moved() -> bool:
                after = run_owners(postgres_url, left_at)
                return set(after) == stayed and set().union(*after.values()) == set(names)

            await until(moved, limit=20)
        except TimeoutError:
            dump(postgres_url, replicas)
            raise
        remaining = [pid for (pid,) in rows(postgres_url, "SELECT pid FROM replicas")]
        await stop(replicas)
        expected = emu.adobe.catalog.snapshot()
        assert_requests_within_one_run_each(postgres_url, emu, names)
    assert sorted(remaining) == sorted(stayed)  # the leaver removed its row
    assert its_sources and its_sources <= set().union(*run_owners(postgres_url, left_at).values())
    assert rows(postgres_url, "SELECT count(*) FROM sync_runs WHERE status = 'failed'") == [(0,)]
    for name in names:
        assert stored(postgres_url, name) == expected, name
    assert_no_overlapping_runs(postgres_url)

"""The health listener: /healthz, /readyz turning unready on re-auth or staleness, /metrics moving."""

from __future__ import annotations

import ast
import socket
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

import syncd.auth.cache as cache_module
from syncd.config import (
    AdobeCommerceSourceSettings,
    HealthSettings,
    HttpSettings,
    ImsAuthSettings,
    Settings,
    load_settings,
)
from syncd.daemon import Daemon
from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault
from syncd.errors import ConfigError
from syncd.log_events import scan
from syncd.ops.health import HealthServer, check, probe_url
from syncd.ops.metrics import TOKEN_EVENTS, Metrics, StoreSnapshot
from syncd.ops.staleness import judge, schedule_period, stale_limit
from syncd.runtime import Runtime
from tests.clocks import ManualClock, scheduler_on
from tests.support import adobe_source, settings_for, until

pytestmark = pytest.mark.timeout(30)
NEVER = "0 0 1 1 *"  # a cron slot a test never reaches: no run starts unless the test asks


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """A small catalog on loopback."""
    async with Emulator(EmulatorConfig(adobe=AdobeConfig(products=25), seed=11)) as emulator:
        yield emulator


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """Fake time, APScheduler's too (`scheduler_on`)."""
    clock = ManualClock(datetime(2026, 1, 1, 1, 30, tzinfo=UTC))
    scheduler_on(clock, monkeypatch)
    return clock


@asynccontextmanager
async def running(settings: Settings, clock: ManualClock) -> AsyncIterator[Daemon]:
    """A daemon with its listener on a free loopback port."""
    async with Runtime(settings, clock) as runtime, Daemon(runtime, handle_signals=False) as daemon:
        yield daemon


def with_health(settings: Settings) -> Settings:
    return settings.model_copy(update={"health": HealthSettings(enabled=True, port=0)})


async def get(daemon: Daemon, path: str) -> tuple[int, Any]:
    """GET `path` from the daemon's listener: (status, JSON body or text)."""
    assert daemon.health is not None
    url = f"http://127.0.0.1:{daemon.health.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_healthz_answers_while_the_loop_runs(
    tmp_path: Path, emu: Emulator, clock: ManualClock
) -> None:
    """200 with the scheduler running; the body says so."""
    settings = with_health(settings_for(tmp_path / "s.db", adobe_source(emu, schedule=NEVER)))
    async with running(settings, clock) as daemon:
        status, body = await get(daemon, "/healthz")
    assert status == 200
    assert body["alive"] is True and body["scheduler"] == "running" and body["stopping"] is False


async def test_healthz_fails_once_the_scheduler_has_stopped(
    tmp_path: Path, emu: Emulator, clock: ManualClock
) -> None:
    """A scheduler that stopped while the daemon is not stopping is a dead daemon: 503."""
    settings = with_health(settings_for(tmp_path / "s.db", adobe_source(emu, schedule=NEVER)))
    async with running(settings, clock) as daemon:
        assert (await get(daemon, "/healthz"))[0] == 200
        daemon._scheduler.shutdown()  # what a crashed APScheduler looks like from outside
        status, body = await get(daemon, "/healthz")
    assert status == 503
    assert (body["alive"], body["scheduler"], body["stopping"]) == (False, "stopped", False)


async def test_the_listener_is_off_unless_enabled(
    tmp_path: Path, emu: Emulator, clock: ManualClock
) -> None:
    """Nothing listens by default; enabled, it listens on 127.0.0.1:9464 unless told otherwise."""
    assert Settings().health.enabled is False
    defaults = HealthSettings()
    assert (defaults.host, defaults.port, defaults.allow_remote) == ("127.0.0.1", 9464, False)
    settings = settings_for(tmp_path / "s.db", adobe_source(emu, schedule=NEVER))
    with capture_logs() as logs:
        async with running(settings, clock) as daemon:
            assert daemon.health is None
    assert not [e for e in logs if e["event"] == "health.listening"]


async def test_readyz_turns_unready_while_a_source_needs_reauth(
    tmp_path: Path, emu: Emulator, clock: ManualClock
) -> None:
    """needs_reauth makes /readyz 503 naming the source and the command; clearing it restores 200."""
    settings = with_health(settings_for(tmp_path / "s.db", adobe_source(emu, schedule=NEVER)))
    async with Runtime(settings, clock) as runtime, Daemon(runtime, handle_signals=False) as daemon:
        assert (await get(daemon, "/readyz"))[0] == 200
        store = runtime.store
        await store.set_needs_reauth("shop", "the refresh token was revoked", clock.now())
        status, body = await get(daemon, "/readyz")
        assert status == 503 and body["ready"] is False and body["store"] == "ok"
        (shop,) = body["sources"]
        assert shop["needs_reauth"] is True and "syncd auth shop" in shop["reasons"][0]
        _, metrics = await get(daemon, "/metrics")
        assert samples(metrics)[("syncd_source_needs_reauth", (("source", "shop"),))] == 1.0
        await store.set_needs_reauth("shop", None, clock.now())
        assert (await get(daemon, "/readyz"))[0] == 200
        _, metrics = await get(daemon, "/metrics")
        assert samples(metrics)[("syncd_source_needs_reauth", (("source", "shop"),))] == 0.0


async def next_check(daemon: Daemon, clock: ManualClock, seconds: float) -> None:
    """Advance fake time by `seconds` and wait until the periodic staleness check has run."""
    done = daemon.monitor.checks
    clock.advance(seconds)
    await until(lambda: daemon.monitor.checks > done)


async def test_a_source_past_its_limit_is_stale_everywhere(
    tmp_path: Path, emu: Emulator, clock: ManualClock
) -> None:
    """2 x 1h without a success: /readyz 503, the gauge at 1, `source.stale` logged once, again
    an hour later, and `source.fresh` once a run succeeds."""
    source = adobe_source(emu, schedule="1h", stale_after=2)
    settings = with_health(settings_for(tmp_path / "s.db", source))

    def logged(event: str) -> list[MutableMapping[str, Any]]:
        return [e for e in logs if e["event"] == event]

    with capture_logs() as logs:
        async with running(settings, clock) as daemon:
            await until(lambda: bool(daemon.results) and daemon.monitor.checks >= 1)
            assert (await get(daemon, "/readyz"))[0] == 200
            await next_check(daemon, clock, 2 * 3600 + 1)
            (stale,) = logged("source.stale")
            status, body = await get(daemon, "/readyz")
            _, metrics = await get(daemon, "/metrics")
            await next_check(daemon, clock, 60)  # still stale: no repeat within the hour
            assert len(logged("source.stale")) == 1
            await next_check(daemon, clock, 3600)  # the hourly reminder
            assert len(logged("source.stale")) == 2
            result = await daemon.run_once("shop")
            assert result is not None and result.ok
            await next_check(daemon, clock, 60)
            (fresh,) = logged("source.fresh")
            await next_check(daemon, clock, 60)
            assert len(logged("source.fresh")) == 1 and len(logged("source.stale")) == 2
    assert status == 503
    (shop,) = body["sources"]
    assert shop["stale"] is True and shop["age_s"] > 7200 and shop["stale_limit_s"] == 7200
    assert samples(metrics)[("syncd_source_stale", (("source", "shop"),))] == 1.0
    assert stale["limit_s"] == 7200 and stale["log_level"] == "warning"
    assert stale["age_s"] > 7200 and stale["source"] == "shop"
    assert fresh["source"] == "shop" and fresh["last_success_at"] is not None


async def test_metrics_counters_move_after_a_sync(
    tmp_path: Path, emu: Emulator, clock: ManualClock
) -> None:
    """Runs, items, requests, the latency histogram and token events count the run just made."""
    settings = with_health(settings_for(tmp_path / "s.db", adobe_source(emu, schedule=NEVER)))
    async with running(settings, clock) as daemon:
        status, before = await get(daemon, "/metrics")
        result = await daemon.run_once("shop")
        _, after = await get(daemon, "/metrics")
    assert status == 200 and result is not None and result.ok
    shop = (("source", "shop"),)
    old, new = samples(before), samples(after)
    assert old[("syncd_requests_total", shop)] == 0
    assert (
        old[("syncd_runs_total", (("kind", "full"), ("source", "shop"), ("status", "succeeded")))]
        == 0
    )
    assert (
        new[("syncd_runs_total", (("kind", "full"), ("source", "shop"), ("status", "succeeded")))]
        == 1
    )
    requests = result.totals.requests
    assert requests > 0 and new[("syncd_requests_total", shop)] == requests
    assert new[("syncd_request_duration_seconds_count", shop)] == requests
    assert new[("syncd_items_total", (("outcome", "created"), ("source", "shop")))] == 25
    assert new[("syncd_token_events_total", (("event", "issued"), ("source", "shop")))] == 1
    assert new[("syncd_products", shop)] == 25
    # The manual clock stands still through the run: the timestamp is its time, to the
    # millisecond the store keeps.
    assert new[("syncd_last_success_timestamp_seconds", shop)] == pytest.approx(
        clock.now().timestamp(), abs=0.001
    )
    assert "client_secret" not in after and emu.adobe.config.client_secret not in after


async def test_retries_and_429s_are_counted(tmp_path: Path, emu: Emulator) -> None:
    """One injected 429 and one 503: syncd_rate_limited_total 1, syncd_retries_total 2."""
    http = HttpSettings(
        max_attempts=3,
        backoff_base=0.001,
        backoff_cap=0.01,
        max_retry_after=0.01,
        adaptive_rate=False,
    )
    source = adobe_source(emu, schedule=NEVER, max_concurrency=1)
    settings = with_health(settings_for(tmp_path / "s.db", source, http=http))
    emu.adobe.faults.add(Fault("status", status=429, after=1))
    emu.adobe.faults.add(Fault("status", status=503, after=2))
    # Real time, with pauses capped at 10 ms (a 429 pauses on the runtime's clock), and no
    # adaptive rate cut, which would pace the rest of this tiny run at the rate floor.
    async with Runtime(settings) as runtime, Daemon(runtime, handle_signals=False) as daemon:
        _, before = await get(daemon, "/metrics")
        result = await daemon.run_once("shop")
        _, after = await get(daemon, "/metrics")
    assert result is not None and result.ok and emu.adobe.stats.faults_injected == 2
    shop = (("source", "shop"),)
    old, new = samples(before), samples(after)
    assert old[("syncd_rate_limited_total", shop)] == old[("syncd_retries_total", shop)] == 0
    assert (result.totals.rate_limited, result.totals.retries) == (1, 2)
    assert new[("syncd_rate_limited_total", shop)] == 1
    assert new[("syncd_retries_total", shop)] == 2


def test_every_alerted_series_exists_at_zero_before_its_first_event() -> None:
    """increase() misses a series born at 1: runs by kind x status and token events start at 0;
    no `_created` series doubles the count."""
    metrics = Metrics()
    metrics.declare(["shop"])
    metrics.update(StoreSnapshot(token_events={("shop", "issued"): 2, ("gone", "failed"): 1}))
    exposed = samples(metrics.render().decode())
    runs = {
        (dict(labels)["kind"], dict(labels)["status"]): value
        for (name, labels), value in exposed.items()
        if name == "syncd_runs_total"
    }
    assert runs == {
        (kind, status): 0.0
        for kind in ("full", "incremental")
        for status in ("succeeded", "failed", "cancelled")
    }
    tokens = {
        (dict(labels)["source"], dict(labels)["event"]): value
        for (name, labels), value in exposed.items()
        if name == "syncd_token_events_total"
    }
    assert tokens == {
        **{("shop", e): 0.0 for e in ("issued", "reused", "refreshed", "invalidated", "failed")},
        ("shop", "issued"): 2.0,
        ("gone", "failed"): 1.0,
    }
    assert not [name for name, _ in exposed if name.endswith("_created")]


def recorded_token_event_kinds() -> set[str]:
    """The kinds the token cache writes as `token_events` rows: every string literal passed as
    the `event` argument of its `_event(...)` calls, read from its source."""
    tree = ast.parse(Path(cache_module.__file__).read_text(encoding="utf-8"))
    kinds: set[str] = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_event"
        ):
            continue
        event = node.args[1] if len(node.args) > 1 else None
        event = event or next((k.value for k in node.keywords if k.arg == "event"), None)
        assert event is not None, ast.dump(node)
        kinds.update(
            c.value
            for c in ast.walk(event)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        )
    return kinds


def test_the_declared_token_events_are_the_ones_the_cache_records() -> None:
    """Every kind of token_events row the cache writes gets its zero series, and no series is
    declared for a kind it never writes (read from the cache's calls, not from the Literal the
    metrics are defined from); the cache logs each of them."""
    assert set(TOKEN_EVENTS) == recorded_token_event_kinds()
    logged = {e.name.removeprefix("token.") for e in scan() if "syncd.auth.cache" in e.modules}
    assert set(TOKEN_EVENTS) <= logged
    # The rest are log-only: a token that could not be written has no row to write it in.
    assert logged - set(TOKEN_EVENTS) == {"persist_failed", "lost"}


def test_non_loopback_listen_address_needs_allow_remote() -> None:
    """0.0.0.0 is refused unless allow_remote says the operator means it."""
    with pytest.raises(ValueError, match="not a loopback address"):
        HealthSettings(enabled=True, host="0.0.0.0")  # noqa: S104 - the refusal under test
    assert HealthSettings(host="::1").host == "::1"
    wide = HealthSettings(enabled=True, host="0.0.0.0", allow_remote=True)  # noqa: S104
    assert probe_url(wide, "/healthz") == f"http://127.0.0.1:{wide.port}/healthz"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port somebody else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def test_a_busy_port_is_one_clear_config_error(busy_port: int) -> None:
    """The listener cannot start: ConfigError naming health.port and the address."""
    settings = HealthSettings(enabled=True, port=busy_port)
    with pytest.raises(ConfigError) as caught:
        async with HealthServer(settings, probe=None):  # type: ignore[arg-type]
            pass
    (problem,) = caught.value.problems
    assert problem.startswith(f"health.port: cannot listen on 127.0.0.1:{busy_port}")


async def test_check_reports_an_unreachable_listener_in_one_line(busy_port: int) -> None:
    """A refused connection is (False, one line naming the URL), not an exception."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    ok, line = await check(f"http://127.0.0.1:{port}/healthz")
    assert ok is False and line.startswith(f"http://127.0.0.1:{port}/healthz: ")
    assert "\n" not in line


def test_stale_limits_for_intervals_cron_and_absolute_durations() -> None:
    """3 x 15m; a weekday cron's longest gap is the weekend; "26h" is taken as it is."""
    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
    assert schedule_period(source(schedule="15m").parsed_schedule, now) == 900
    assert stale_limit(source(schedule="15m"), now) == 3 * 900
    assert stale_limit(source(schedule="0 3 * * 1-5"), now) == 3 * 3 * 86400
    assert stale_limit(source(schedule="0 3 * * *", stale_after="26h"), now) == 26 * 3600
    assert judge(None, 60, now, None) == (None, None)
    assert judge(None, 60, now, now.replace(hour=11)) == (None, True)
    assert judge(now.replace(minute=59, hour=11), 120, now, None) == (60.0, False)


def source(**fields: Any) -> AdobeCommerceSourceSettings:
    """A source with placeholder credentials (never contacted)."""
    auth = ImsAuthSettings(client_id="c", client_secret="s", org_id="o")  # type: ignore[arg-type]
    return AdobeCommerceSourceSettings.model_validate(
        {"name": "shop", "kind": "adobe_commerce", "base_url": "http://127.0.0.1:1", "auth": auth}
        | fields
    )


def test_stale_after_rejects_what_it_cannot_mean() -> None:
    """A multiple below 1 or a string that is not a duration is a clear config error."""
    with pytest.raises(ValueError, match="at least 1"):
        source(stale_after=0.5)
    with pytest.raises(ValueError, match="a duration such as"):
        source(stale_after="tomorrow")


def test_a_non_loopback_host_in_the_file_is_one_config_line(tmp_path: Path) -> None:
    """From TOML: one line naming health, the address and the way out."""
    path = tmp_path / "syncd.toml"
    path.write_text('[health]\nenabled = true\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (problem,) = caught.value.problems
    assert problem.startswith("health: host '0.0.0.0' is not a loopback address")
    assert "allow_remote = true" in problem

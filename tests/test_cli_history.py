"""`syncd runs`, `syncd events` and `syncd status --json`: filters, tables, and shapes scripts parse."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from syncd.cli import main
from syncd.commands.history import parse_since, render_table
from syncd.store import RunTotals, SqliteStore, TokenEvent
from tests.clocks import FakeClock

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
"""The time of every command these tests run (`main`'s clock)."""
CONFIG = """
[store]
path = "{db}"
{sources}
"""
SOURCE = """
[[sources]]
name = "{name}"
kind = "adobe_commerce"
base_url = "https://{name}.example.com"
schedule = "15m"
[sources.auth]
client_id = "cid"
org_id = "ORG@AdobeOrg"
"""
STATUS_KEYS = {
    "source", "kind", "enabled", "schedule", "products", "last_run", "last_success_at", "age_s",
    "stale_limit_s", "stale", "token_expires_at", "needs_reauth", "reauth_reason", "action",
    "lease",
}  # fmt: skip


async def populate(db: Path) -> None:
    """shop: a success 3 h ago and a failure 30 min ago; ac: a success 10 min ago, then a revoked grant."""
    async with SqliteStore(db) as store:
        for source, kind, ago, status, error, seen in (
            ("shop", "full", timedelta(hours=3), "succeeded", None, 100),
            ("shop", "incremental", timedelta(minutes=30), "failed", "GET /x: HTTP 500", 0),
            ("ac", "full", timedelta(minutes=10), "succeeded", None, 7),
        ):
            run = await store.start_run(source, kind, NOW - ago)  # type: ignore[arg-type]
            totals = RunTotals(pages=1, items_seen=seen, items_created=seen, requests=4, retries=1)
            await store.finish_run(run, status, totals, NOW - ago + timedelta(seconds=60), error)  # type: ignore[arg-type]
        await store.add_token_event(
            TokenEvent("shop", NOW - timedelta(hours=3), "issued", NOW, "sha256:0123456789ab")
        )
        await store.add_token_event(
            TokenEvent("ac", NOW - timedelta(minutes=5), "failed", detail="invalid_client")
        )
        await store.set_needs_reauth("ac", "the refresh token was revoked", NOW)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with sources shop and ac over a database with some history."""
    db = tmp_path / "syncd.db"
    asyncio.run(populate(db))
    monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", "s3cret-shop")
    monkeypatch.setenv("SYNCD_SECRET_AC_CLIENT_SECRET", "s3cret-ac")
    path = tmp_path / "syncd.toml"
    sources = "".join(SOURCE.format(name=n) for n in ("shop", "ac"))
    path.write_text(CONFIG.format(db=db, sources=sources))
    return path


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args], clock=FakeClock(NOW))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(config, capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_runs_newest_first_with_every_counter(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All runs, newest first, each with its counters, duration and error."""
    runs = as_json(config, capsys, "runs")["runs"]
    assert [(r["id"], r["source"], r["status"]) for r in runs] == [
        (3, "ac", "succeeded"), (2, "shop", "failed"), (1, "shop", "succeeded"),
    ]  # fmt: skip
    assert runs[1]["error"] == "GET /x: HTTP 500" and runs[2]["items_seen"] == 100
    assert runs[2]["duration_s"] == 60 and runs[2]["retries"] == 1


def test_runs_filters_by_source_status_since_and_limit(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SOURCE, --status, --since (age or ISO with an offset) and --limit narrow the list."""

    def ids(*a: str) -> list[int]:
        return [r["id"] for r in as_json(config, capsys, "runs", *a)["runs"]]

    assert ids("shop") == [2, 1]
    assert ids("--status", "failed") == [2]
    assert ids("--since", "1h") == [3, 2]
    two_hours_ago = (NOW - timedelta(hours=2)).astimezone(timezone(timedelta(hours=2)))
    assert ids("--since", two_hours_ago.isoformat()) == [3, 2]
    assert ids("--limit", "1") == [3]


def test_runs_table_lines_up(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A header and one row per run, columns aligned, the error at the end of its row."""
    code, out, _ = run(config, capsys, "runs")
    header, *rows = out.splitlines()
    assert code == 0 and header.split()[:4] == ["ID", "SOURCE", "KIND", "STATUS"]
    assert len(rows) == 3 and rows[1].endswith("GET /x: HTTP 500")
    assert {line.index(word) for line, word in zip(out.splitlines(), ["STATUS", "succeeded", "failed", "succeeded"], strict=True)} == {header.index("STATUS")}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("runs", "--since", "yesterday"), "--since: 'yesterday' is invalid: expected an ISO-8601"),
        (("events", "--since", "5x"), "--since: '5x' is invalid"),
        (("runs", "--limit", "0"), "--limit: 0 is invalid: expected 1 or more"),
        (("events", "--since", "99999999d"), "--since: '99999999d' is invalid: expected an age"),
        (
            ("runs", "--since", f"{10**30}w"),
            "is invalid: expected an age that ends after the year 1",
        ),
    ],
)
def test_bad_filters_are_one_line_and_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    """A value the command cannot use: exit 2 and one line naming the option, no traceback."""
    code, out, err = run(config, capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("syncd: error: ") and message in err


def test_an_unknown_source_says_which_are_configured(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo gets a hint, not a silently empty table."""
    code, out, _ = run(config, capsys, "runs", "shpo")
    assert code == 0 and out.strip() == "no runs for 'shpo' (configured sources: shop, ac)"


def test_events_json_and_table(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Token events newest first, filtered by source and age; fingerprints only."""
    events = as_json(config, capsys, "events")["events"]
    assert [(e["source"], e["event"]) for e in events] == [("ac", "failed"), ("shop", "issued")]
    assert events[0]["detail"] == "invalid_client" and events[1]["fingerprint"].startswith(
        "sha256:"
    )
    assert [e["event"] for e in as_json(config, capsys, "events", "--since", "1h")["events"]] == [
        "failed"
    ]
    code, out, _ = run(config, capsys, "events", "shop")
    assert code == 0 and out.splitlines()[0].split() == [
        "AT", "SOURCE", "EVENT", "EXPIRES", "FINGERPRINT", "OWNER", "DETAIL",
    ]  # fmt: skip
    assert "sha256:0123456789ab" in out and "s3cret" not in out


def test_status_json_shape_staleness_and_actions(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented shape: schema 1; shop stale (3 h > 3 x 15 m); ac fresh but waiting for auth."""
    document = as_json(config, capsys, "status")
    assert document["schema"] == 1 and document["generated_at"].endswith("Z")
    shop, ac = document["sources"]
    assert set(shop) == set(ac) == STATUS_KEYS
    assert shop["lease"] is None  # SQLite: one process, no leases
    assert (
        shop["last_run"]["status"] == "failed" and shop["last_run"]["error"] == "GET /x: HTTP 500"
    )
    finished = (NOW - timedelta(hours=3) + timedelta(seconds=60)).isoformat(timespec="milliseconds")
    finished = finished.replace("+00:00", "Z")
    assert shop["last_success_at"] == finished
    assert shop["stale"] is True and shop["stale_limit_s"] == 2700
    # The age counts from the command's clock.
    assert document["generated_at"] == "2026-03-14T15:09:26.000Z"
    assert shop["age_s"] == 3 * 3600 - 60
    assert (shop["needs_reauth"], shop["action"]) == (False, None)
    assert ac["stale"] is False and ac["needs_reauth"] is True
    assert ac["reauth_reason"] == "the refresh token was revoked"
    assert ac["action"] == "run 'syncd auth ac'"
    assert "s3cret" not in json.dumps(document)


def test_parse_since_forms() -> None:
    """Ages count back from now; dates are UTC midnight; offsets are folded into UTC."""
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2d", now) == datetime(2026, 5, 8, 12, 0, tzinfo=UTC)
    assert parse_since("2026-05-01", now) == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_since("2026-05-01T12:00:00+02:00", now) == datetime(2026, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected an ISO-8601"):
        parse_since("last week", now)


def test_render_table_cuts_the_last_column_to_the_terminal() -> None:
    """Only the free-text last column is cut, with an ellipsis, when a width is given."""
    table = render_table(["A", "NOTE"], [["x", "a long explanation"]], width=12)
    assert table.splitlines() == ["A  NOTE", "x  a long e…"]


async def test_store_filters_token_events_by_kind(tmp_path: Path) -> None:
    """`event` keeps one kind or several, combined with the source and since filters."""
    async with SqliteStore(tmp_path / "e.db") as store:
        for source, ago, kind in (
            ("shop", 40, "issued"), ("shop", 30, "invalidated"), ("shop", 20, "refreshed"),
            ("ac", 10, "failed"), ("shop", 5, "failed"),
        ):  # fmt: skip
            await store.add_token_event(TokenEvent(source, NOW - timedelta(minutes=ago), kind))
        assert [e.event for e in await store.token_events(event="failed")] == ["failed", "failed"]
        both = await store.token_events("shop", event=["issued", "refreshed"])
        assert [e.event for e in both] == ["refreshed", "issued"]
        recent = await store.token_events("shop", NOW - timedelta(minutes=25), event=("failed",))
        assert [(e.source, e.event) for e in recent] == [("shop", "failed")]
        assert await store.token_events(event=[]) == []


def test_events_filter_by_kind(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--event keeps the named kinds: repeated, comma-separated, with SOURCE; unknown ones exit 2."""

    def kinds(*args: str) -> list[tuple[str, str]]:
        return [
            (e["source"], e["event"]) for e in as_json(config, capsys, "events", *args)["events"]
        ]

    assert kinds("--event", "failed") == [("ac", "failed")]
    assert kinds("--event", "issued", "--event", "failed") == [("ac", "failed"), ("shop", "issued")]
    assert kinds("--event", "issued,failed", "shop") == [("shop", "issued")]
    assert kinds("--event", "refreshed") == []
    code, out, _ = run(config, capsys, "events", "--event", "refreshed")
    assert code == 0 and out.strip() == "no token events match"
    code, out, err = run(config, capsys, "events", "--event", "issued,expired")
    assert code == 2 and out == ""
    assert err == (
        "syncd: error: --event: 'expired' is invalid: expected one or more of issued, reused, "
        "refreshed, invalidated, failed (repeat --event or separate with commas)\n"
    )


def test_status_token_expiry_is_the_latest_grants(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """token_expires_at is the newest issued/refreshed/reused expiry, however many failures follow."""
    shop, ac = as_json(config, capsys, "status")["sources"]
    assert shop["token_expires_at"] == NOW.isoformat() and ac["token_expires_at"] is None
    later = NOW + timedelta(hours=24)

    async def refresh_then_fail(db: Path) -> None:
        async with SqliteStore(db) as store:
            await store.add_token_event(
                TokenEvent("shop", NOW - timedelta(minutes=2), "refreshed", later, "sha256:fe")
            )
            for _ in range(25):
                await store.add_token_event(TokenEvent("shop", NOW, "invalidated", later, "x"))

    asyncio.run(refresh_then_fail(config.parent / "syncd.db"))
    shop, _ = as_json(config, capsys, "status")["sources"]
    assert shop["token_expires_at"] == later.isoformat()
    code, out, _ = run(config, capsys, "status")
    assert code == 0 and f"token expires: {later.isoformat()}" in out
    assert "token expires: no token yet" in out.split("ac (adobe_commerce)")[1]


def test_a_huge_limit_means_everything(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --limit beyond SQLite's 64-bit integers lists every row instead of failing."""
    assert len(as_json(config, capsys, "runs", "--limit", str(10**20))["runs"]) == 3
    assert len(as_json(config, capsys, "events", "--limit", str(2**63))["events"]) == 2

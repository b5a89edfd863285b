"""The fault-injection scenarios, in report order: an id, and what the scenario asserts.

Every test in `tests/faults/` records its row under one of these ids; the reliability report has
exactly one row per entry, and refuses to render while one of them has no results. What a row
says was injected, run and measured comes from the lab (tests/faults/lab.py), never from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row of docs/RELIABILITY.md: its id and what its test asserts beyond every scenario's
    common checks (a good first sync before the fault; after it, what was stored is intact, the
    daemon is alive and scheduling, a later run succeeds and the table equals the catalog)."""

    id: str
    asserts: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "rate-limit-storm",
        "no request reaches the API within Retry-After of a 429, from any worker; one rate cut "
        "per flight of requests, and the cut rate holds; once the storm is over the rate climbs "
        "back until the source runs unpaced; the run succeeds",
    ),
    Scenario("server-error-bursts", "nine backed-off retries, nothing else; the run succeeds"),
    Scenario(
        "server-error-storm",
        "the retry budget stops the run as failed, naming the budget and the last error; the "
        "next full run resumes from the checkpoint and asks only for the missing pages",
    ),
    Scenario(
        "slow-responses",
        "each late answer costs one retry and the run succeeds; when every answer is late, the "
        "run fails after max_attempts naming the URL and the timeout",
    ),
    Scenario(
        "truncated-json",
        "each bad body costs one retry that names it; when every body is bad, the run fails "
        "in one line naming the URL and the truncated body",
    ),
    Scenario(
        "malformed-json",
        "each bad body costs one retry that names it; when every body is bad, the run fails "
        "in one line naming the URL and the malformed body",
    ),
    Scenario(
        "html-error-pages",
        "each HTML page costs one retry that names it; when every answer is one, the run "
        "fails in one line naming the URL and the HTML page",
    ),
    Scenario(
        "connection-faults",
        "a reset aiohttp cannot absorb reaches syncd's retry; keep-alive races are retried by "
        "aiohttp or syncd; the run succeeds",
    ),
    Scenario(
        "token-endpoint-blip",
        "the token request backs off on the clock through the outage; the run succeeds",
    ),
    Scenario(
        "token-endpoint-outage",
        "max_attempts token requests, then the run fails naming the endpoint and its answer; "
        "once the outage is over the next run gets a token and succeeds",
    ),
    Scenario(
        "token-revoked-mid-run",
        "the 401s cause exactly one invalidation and one new token; the run succeeds",
    ),
    Scenario(
        "invalid-client",
        "one token request and one API request, no retry loop; the run fails with IMS's "
        "error and no secret; once the client is enabled the next run succeeds",
    ),
    Scenario(
        "token-burst-expired",
        "exactly one token refresh serves all 200 requests; every answer correct",
    ),
    Scenario(
        "token-burst-rejected",
        "all the 401s cause one invalidation and one refresh; every request answered",
    ),
    Scenario(
        "sqlite-disk-full",
        "the run fails naming the write; no page worker left behind; SQLite finds no "
        "corruption, every row is whole; the next full run skips the committed pages",
    ),
    Scenario(
        "sqlite-read-only",
        "the daemon logs one sync.crashed line (no traceback) naming the refused write; once "
        "writable the next run succeeds",
    ),
    Scenario(
        "sick-source-breaker",
        "two failed runs open the breaker: the sick source's next run moves out by the backoff "
        "(logged), nothing reaches its API meanwhile, the other source keeps its schedule and "
        "succeeds; the delayed run succeeds and closes the breaker",
    ),
    Scenario(
        "token-endpoint-redirect",
        "one token request, not retried; the run fails naming the 307 and the other origin "
        "only; the other origin received nothing; no log line carries the client secret",
    ),
    Scenario(
        "api-redirect",
        "one API request, not retried; the run fails naming the 302 and the other origin only; "
        "the other origin received nothing and nothing of its answer is stored",
    ),
    Scenario(
        "oversized-body",
        "the body is read no further than max_body_size (under 16 MiB allocated at the peak); "
        "one request, not retried; the run fails naming the URL and the cap",
    ),
    Scenario(
        "huge-total-count",
        "one request: the run fails on page 1 naming total_count and max_catalog_size, before "
        "any further page (or page number) is made",
    ),
)

SCENARIOS += (
    Scenario(
        "empty-middle-page",
        "the scan is incomplete (the empty page named) and stops asking for pages, verifies by "
        "keyset listing and tombstones exactly the deleted products; requests within pages + "
        "listing + batches, the run within a minute",
    ),
    Scenario(
        "short-middle-page",
        "the scan is incomplete (the short page named), verifies by keyset listing and "
        "tombstones exactly the deleted products; requests within pages + listing + batches",
    ),
    Scenario(
        "duplicate-sku-pages",
        "the sku served again with another id is not written (sync.sku_conflict), read again by "
        "sku in the verification; no row holds another product's payload, only the deleted are "
        "tombstoned",
    ),
    Scenario(
        "stale-cached-page",
        "the old copy of the page never moves a row back (older updated_at: not written, read "
        "again by sku); the run verifies and tombstones exactly the deleted product",
    ),
    Scenario(
        "short-page-and-broken-listing",
        "the scan is incomplete and so is its verification listing: nothing is tombstoned, "
        "sync.tombstones_skipped and the run's row say why, nothing stored is lost; the next run "
        "is a full scan that tombstones exactly the deleted products",
    ),
)

SCENARIOS += (
    Scenario(
        "token-endpoint-echo",
        "the run fails naming the client secret's fingerprint only; the fingerprint is in the "
        "log output and the run's row, the secret in no sink",
    ),
    Scenario(
        "api-error-echo",
        'both runs fail naming the bearer token\'s fingerprint, the 401 one "refused twice"; '
        "no token and no secret in any sink",
    ),
    Scenario(
        "retry-after-superscript",
        "`Retry-After: ²` is no number: the 429 is retried after the default pause, no internal "
        "error; the run succeeds",
    ),
    Scenario(
        "nested-json",
        "one request, not retried: the run fails naming the URL and the nesting, not an "
        "internal RecursionError",
    ),
    Scenario(
        "huge-total-empty-pages",
        "total_count 10^9 over pages that are empty past the catalog: one request, the run "
        "fails naming total_count and max_catalog_size, no runaway of empty pages",
    ),
    Scenario(
        "token-expired-while-queued",
        "a request that waited out a 429 past its token's expiry takes a fresh token when it "
        "leaves: no 401, no run failed; exactly one new token",
    ),
    Scenario(
        "database-deleted",
        "each run is refused naming the deleted path (store.file_changed once), /readyz not "
        "ready, nothing written where the file was; the daemon stays alive; restarted, it "
        "builds a fresh database with a full sync",
    ),
    Scenario(
        "database-replaced",
        "the run is refused naming the replacement, /readyz not ready, the restored file left "
        "as restored (no old WAL replayed); restarted, the daemon syncs it up to date",
    ),
    Scenario(
        "clock-stepped-back",
        "the next run moves back by the step (scheduler.clock_stepped once), /healthz stays "
        "healthy with nothing overdue; the next run succeeds",
    ),
    Scenario(
        "two-daemons-fresh-database",
        "a second daemon opened at the same moment on the same fresh file: both open it (no "
        "`already exists`), both sync, the schema created once",
    ),
    Scenario(
        "sigterm-manual-sync",
        "SIGTERM to `syncd sync` mid-run: exit 143 and one final line, the run recorded "
        "`cancelled` with a reason that names no daemon, whole pages only; the daemon's next run "
        "succeeds",
    ),
)

SCENARIO_IDS = frozenset(s.id for s in SCENARIOS)

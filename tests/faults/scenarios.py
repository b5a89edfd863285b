"""The fault-injection scenarios, in report order: id, what is injected, what must happen.

Every test in `tests/faults/` records its figures under one of these ids; the reliability report
has exactly one row per entry, and refuses to render while one of them has no results.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row of docs/RELIABILITY.md."""

    id: str
    fault: str
    expected: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "rate-limit-storm",
        "30% of API answers are 429 with Retry-After: 1",
        "run succeeds; every worker pauses; the rate is cut and logged",
    ),
    Scenario(
        "server-error-bursts",
        "three bursts of three 500/502/503 answers",
        "run succeeds after backed-off retries",
    ),
    Scenario(
        "server-error-storm",
        "every answer after the 8th is a 503",
        "retry budget stops the run as failed; next run resumes from the checkpoint",
    ),
    Scenario(
        "slow-responses",
        "25% of answers 400 ms late against a 100 ms timeout, then every answer late",
        "run succeeds; then fails naming the timeout; data intact",
    ),
    Scenario(
        "truncated-json",
        "20% of answers cut half way, then every answer cut",
        "run succeeds; then fails naming the truncated body; data intact",
    ),
    Scenario(
        "malformed-json",
        "20% of answers are 200 with a body that is not JSON",
        "run succeeds after retries that name the bad body",
    ),
    Scenario(
        "html-error-pages",
        "20% of answers are a proxy's 502 HTML page",
        "run succeeds after retries that name the HTML page",
    ),
    Scenario(
        "connection-faults",
        "TCP resets, and disconnects of 30% of requests on reused keep-alive connections",
        "run succeeds; resets reach syncd's retry, keep-alive races are retried",
    ),
    Scenario(
        "token-endpoint-blip",
        "token endpoint answers 503 for 2 s",
        "the token request is retried through the outage; run succeeds",
    ),
    Scenario(
        "token-endpoint-outage",
        "token endpoint answers 503 for an hour",
        "run fails naming the endpoint; daemon keeps scheduling; next run succeeds",
    ),
    Scenario(
        "token-revoked-mid-run",
        "every token revoked after the 3rd page (API answers 401)",
        "exactly one refresh; run succeeds",
    ),
    Scenario(
        "invalid-client",
        "token revoked and the client disabled: IMS answers invalid_client",
        "one token request, no retry loop; run fails clearly; next run succeeds once re-enabled",
    ),
    Scenario(
        "token-burst-expired",
        "200 concurrent requests while the shared token has expired",
        "exactly one token refresh; every answer correct",
    ),
    Scenario(
        "token-burst-rejected",
        "200 concurrent requests carrying a token the API now rejects (401)",
        "exactly one invalidation and one refresh; every answer correct",
    ),
    Scenario(
        "sqlite-disk-full",
        "the database cannot grow (SQLITE_FULL) part way through a full sync",
        "run fails naming the write; no corruption; next run resumes and completes",
    ),
    Scenario(
        "sqlite-read-only",
        "the database refuses every write (SQLITE_READONLY) while the daemon runs",
        "run fails in one log line; daemon keeps scheduling; next run succeeds",
    ),
    Scenario(
        "sick-source-breaker",
        "one of two sources answers 500 to everything",
        "sick source backed off and recovers on its own; the other source is untouched",
    ),
)

SCENARIO_IDS = frozenset(s.id for s in SCENARIOS)

"""Retry policy maths and Retry-After parsing: pure functions of their inputs."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from syncd.config import HttpSettings
from syncd.http.retry import (
    Attempts,
    Decision,
    Outcome,
    RetryBudget,
    RetryPolicy,
    Verdict,
    parse_retry_after,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_retry_after_delta_seconds() -> None:
    """A delta-seconds header is taken as it is."""
    assert parse_retry_after("7", NOW) == 7.0


def test_retry_after_http_date() -> None:
    """An HTTP-date header is turned into the seconds left until that date."""
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", NOW) == 30.0


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 01 Mar 2026 12:00:30 GMT",  # IMF-fixdate
        "Sunday, 01-Mar-26 12:00:30 GMT",  # obsolete RFC 850
        "Sun Mar  1 12:00:30 2026",  # asctime: no zone, GMT by definition
        "Sun, 01 Mar 2026 12:00:30 -0000",  # "-0000": GMT of unknown origin (RFC 5322)
    ],
)
def test_retry_after_every_http_date_form_is_gmt(value: str) -> None:
    """RFC 9110 asks for all three HTTP-date forms; a zoneless one is GMT, not ignored."""
    assert parse_retry_after(value, NOW) == 30.0


def test_retry_after_date_in_the_past_means_now() -> None:
    """A date already passed means no wait, never a negative one."""
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "1.5e3x"])
def test_retry_after_unusable_values(value: str | None) -> None:
    """Missing or unparseable headers give None so the default pause applies."""
    assert parse_retry_after(value, NOW) is None


def test_rate_limit_pause_defaults_and_caps() -> None:
    """No header: the default pause; an absurd header: capped."""
    policy = RetryPolicy(default_retry_after=5, max_retry_after=60)
    assert policy.rate_limit_pause(None) == 5
    assert policy.rate_limit_pause(3600) == 60
    assert policy.rate_limit_pause(2) == 2


def test_retry_after_now_backs_off_with_the_429s_in_a_row() -> None:
    """`Retry-After: 0` (or a date already past) still waits: base, then doubling, capped; a
    positive Retry-After is what the server asked for, however many 429s came before."""
    policy = RetryPolicy(base=0.5, cap=8.0, default_retry_after=5)
    assert [policy.rate_limit_pause(0, n) for n in (1, 2, 3, 6, 9)] == [0.5, 1.0, 2.0, 8.0, 8.0]
    assert [policy.rate_limit_pause(1, n) for n in (1, 5)] == [1, 1]
    assert policy.rate_limit_pause(None, 6) == 5


def test_backoff_is_full_jitter_within_an_exponential_cap() -> None:
    """Delays stay in [0, min(cap, base*2^(n-1))] and actually vary."""
    policy = RetryPolicy(base=1.0, cap=8.0)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.backoff(failures, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8
        assert len(set(delays)) > 100


def test_retry_budget_is_a_minimum_plus_a_share_of_requests() -> None:
    """10 retries are always allowed; beyond that, 20% of the requests sent."""
    budget = RetryBudget(share=0.2, minimum=10)
    assert budget.allows(retries=9, requests=0)
    assert not budget.allows(retries=10, requests=0)
    assert budget.allows(retries=11, requests=10)
    assert not budget.allows(retries=12, requests=10)
    assert budget.allows(retries=29, requests=100)
    assert not budget.allows(retries=30, requests=100)


def test_retry_budget_comes_from_the_http_settings() -> None:
    """retry_budget and retry_budget_min are read from [http]."""
    budget = RetryBudget.from_settings(HttpSettings(retry_budget=0.5, retry_budget_min=3))
    assert budget == RetryBudget(share=0.5, minimum=3)
    assert budget.describe() == "3 + 50% of the requests sent"


# decide(): base 1, cap 8, 4 attempts, a 60 s deadline; the request started at t=100.
DECIDING = RetryPolicy(max_attempts=4, base=1.0, cap=8.0, deadline=60.0, default_retry_after=5.0)
FRESH = Attempts(started=100.0)


@pytest.mark.parametrize(
    ("attempts", "outcome", "now", "expected"),
    [
        pytest.param(
            FRESH, Outcome(jitter=0.5), 100.0,
            Decision(Verdict.BACKOFF, Attempts(100.0, failures=1), delay=0.5),
            id="first-failure-backs-off-jittered",
        ),
        pytest.param(
            Attempts(100.0, failures=2), Outcome(jitter=0.5), 110.0,
            Decision(Verdict.BACKOFF, Attempts(100.0, failures=3), delay=2.0),
            id="third-failure-doubles-twice",
        ),
        pytest.param(
            Attempts(100.0, failures=9), Outcome(jitter=1.0), 110.0,
            Decision(Verdict.ATTEMPTS, Attempts(100.0, failures=10)),
            id="past-max-attempts-gives-up",
        ),
        pytest.param(
            Attempts(100.0, failures=3), Outcome(jitter=0.0), 110.0,
            Decision(Verdict.ATTEMPTS, Attempts(100.0, failures=4)),
            id="the-fourth-failure-is-the-last",
        ),
        pytest.param(
            FRESH, Outcome(budget_left=False, jitter=0.5), 100.0,
            Decision(Verdict.BUDGET, Attempts(100.0, failures=1)),
            id="spent-budget-gives-up",
        ),
        pytest.param(
            Attempts(100.0, failures=2), Outcome(jitter=1.0), 157.0,
            Decision(Verdict.DEADLINE, Attempts(100.0, failures=3), delay=4.0),
            id="backoff-past-the-deadline-gives-up",
        ),
        pytest.param(
            FRESH, Outcome(rate_limited=True, retry_after=7.0), 100.0,
            Decision(Verdict.PAUSE, Attempts(100.0, refusals=1), pause=7.0),
            id="429-pauses-for-retry-after",
        ),
        pytest.param(
            FRESH, Outcome(rate_limited=True), 100.0,
            Decision(Verdict.PAUSE, Attempts(100.0, refusals=1), pause=5.0),
            id="429-without-header-pauses-the-default",
        ),
        pytest.param(
            Attempts(100.0, refusals=2), Outcome(rate_limited=True, retry_after=0.0), 100.0,
            Decision(Verdict.PAUSE, Attempts(100.0, refusals=3), pause=4.0),
            id="429-retry-after-now-backs-off-by-refusals",
        ),
        pytest.param(
            Attempts(100.0, failures=3, refusals=50), Outcome(rate_limited=True, retry_after=1.0),
            100.0,
            Decision(Verdict.PAUSE, Attempts(100.0, failures=3, refusals=51), pause=1.0),
            id="429s-do-not-count-as-failures",
        ),
        pytest.param(
            FRESH, Outcome(rate_limited=True, retry_after=30.0), 140.0,
            Decision(Verdict.DEADLINE, Attempts(100.0, refusals=1), pause=30.0),
            id="429-pause-past-the-deadline-gives-up-but-still-pauses",
        ),
        pytest.param(
            FRESH, Outcome(rate_limited=True, budget_left=False, retry_after=1.0), 100.0,
            Decision(Verdict.PAUSE, Attempts(100.0, refusals=1), pause=1.0),
            id="429s-ignore-the-budget",
        ),
    ],
)  # fmt: skip
def test_decide(attempts: Attempts, outcome: Outcome, now: float, expected: Decision) -> None:
    """The retry decision as a table: state and outcome in, verdict, waits and next state out."""
    decision = DECIDING.decide(attempts, outcome, now)
    assert decision == expected
    assert decision.retry is (expected.verdict in (Verdict.PAUSE, Verdict.BACKOFF))


def test_decide_backoff_matches_the_full_jitter_draw() -> None:
    """decide() scales the same ceiling as backoff(): one draw of the same rng gives one delay."""
    policy = RetryPolicy(max_attempts=10, base=0.5, cap=30.0)
    for failures in range(1, 8):
        drawn = policy.backoff(failures, random.Random(failures))
        jitter = random.Random(failures).random()
        decision = policy.decide(Attempts(0.0, failures=failures - 1), Outcome(jitter=jitter), 0.0)
        assert decision.delay == drawn

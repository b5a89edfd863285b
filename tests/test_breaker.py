"""The source circuit breaker: consecutive failures, exponential backoff to a cap, reset on success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.breaker import Backoff, BreakerPolicy, Recovered, SourceBreaker
from syncd.config import AdobeCommerceSourceSettings, ImsAuthSettings

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_delay_doubles_from_the_threshold_up_to_the_cap() -> None:
    """Threshold 3, base 60 s, cap 1 h: nothing, nothing, 60, 120, 240, ... 3600, 3600."""
    policy = BreakerPolicy(threshold=3, base_delay=60, max_delay=3600)
    delays = [policy.delay(n) for n in range(1, 11)]
    assert delays == [None, None, 60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_months_of_failures_do_not_overflow() -> None:
    """The exponent is bounded: a huge failure count still gives the cap."""
    assert BreakerPolicy(threshold=1, base_delay=1, max_delay=10).delay(100_000) == 10


def test_the_breaker_opens_at_the_threshold_and_says_until_when() -> None:
    """Failures below the threshold change nothing; at it, the backoff runs from `now`."""
    breaker = SourceBreaker(BreakerPolicy(threshold=2, base_delay=30, max_delay=300))
    assert breaker.failed(NOW) is None
    assert not breaker.is_open
    assert breaker.failed(NOW) == Backoff(2, 30, NOW + timedelta(seconds=30))
    assert breaker.is_open
    assert breaker.failed(NOW) == Backoff(3, 60, NOW + timedelta(seconds=60))


def test_a_success_closes_it_and_reports_the_recovery() -> None:
    """A success after an open breaker is a recovery; the count restarts from zero."""
    breaker = SourceBreaker(BreakerPolicy(threshold=1, base_delay=5, max_delay=50))
    breaker.failed(NOW)
    breaker.failed(NOW)
    assert breaker.succeeded() == Recovered(2)
    assert not breaker.is_open
    assert breaker.failed(NOW) == Backoff(1, 5, NOW + timedelta(seconds=5))


def test_a_success_below_the_threshold_is_no_event() -> None:
    """A failure that never opened the breaker is forgotten silently."""
    breaker = SourceBreaker(BreakerPolicy(threshold=3))
    breaker.failed(NOW)
    assert breaker.succeeded() is None
    assert breaker.failures == 0


def test_the_policy_comes_from_the_source_settings() -> None:
    """breaker_threshold, breaker_base_delay and breaker_max_delay are per source."""
    source = AdobeCommerceSourceSettings(
        name="shop",
        kind="adobe_commerce",
        base_url="https://shop.example.com",  # type: ignore[arg-type]
        auth=ImsAuthSettings(client_id="c", client_secret="s", org_id="o"),  # type: ignore[arg-type]
        breaker_threshold=4,
        breaker_base_delay=10,
        breaker_max_delay=80,
    )
    assert BreakerPolicy.from_settings(source) == BreakerPolicy(4, 10.0, 80.0)


@pytest.mark.parametrize(("threshold", "base", "cap"), [(0, 60, 3600), (3, 0, 3600), (3, 60, 30)])
def test_nonsense_policies_are_refused(threshold: int, base: float, cap: float) -> None:
    """A zero threshold, a zero delay or a cap below the base delay cannot be built."""
    with pytest.raises(ValueError, match="BreakerPolicy"):
        BreakerPolicy(threshold, base, cap)

"""Not told the store's limit, a full sync finds it (issue 17): a virtual-time sync of 1,000 pages
(a 100k-product catalog) against a token bucket that answers 429 + Retry-After in whole seconds,
driving the real SourceClient, AdaptiveThrottle and pause gate (tests/rate_sim.py).

Every 429 costs its Retry-After (one second at least) for every worker: at 100 requests/s the
whole sync lasts ten seconds, so the first 429 alone, needed to learn that there is a limit,
costs about 9% of it. That first sync is pinned at what it reaches, not at the 90% floor; what
it found is saved with the source's pace, and every later sync meets the floor.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from syncd.store import SourceRate
from tests.rate_sim import simulate

PAGES = 1000


@pytest.mark.parametrize(("rate", "burst"), [(5, 1), (5, 2), (20, 2), (20, 20)])
def test_an_untold_full_sync_uses_90_percent_of_the_limit_with_under_1_percent_429(
    rate: float, burst: int
) -> None:
    """>= 90% of what the bucket allows over the sync, < 1% of the answers 429."""
    result = simulate(rate, burst, PAGES)
    assert result.allowed_share >= 0.9
    assert result.share_429 < 0.01
    found = result.throttle.rate.found
    assert found is not None and 0.9 * rate <= found <= 1.05 * rate


@pytest.mark.parametrize("rtt", [0.0, 0.005, 0.02])
def test_at_20_per_second_and_a_small_burst_the_floor_holds_with_margin(rtt: float) -> None:
    """The benchmark's rate20 profile (burst 2) at round trips from loopback to 20 ms: >= 91% of
    the allowed with < 1% 429s, so a real run clears 90% with room for its noise. A trial
    placed at the middle of the search's bounds drew a fourth 429 here (90.2%)."""
    result = simulate(20, 2, PAGES, rtt=rtt)
    assert result.allowed_share >= 0.91
    assert result.refused <= 3


def test_a_burst_of_a_whole_second_costs_a_few_more_429s() -> None:
    """5/s with a bucket of 5: a rate a few percent above the limit holds for tens of seconds
    before its 429, so a proof can be wrong and cost more 429s (9 in 1,000 today: 0.9%)."""
    result = simulate(5, 5, PAGES)
    assert result.allowed_share >= 0.95
    assert result.refused <= 10


@pytest.mark.parametrize("burst", [2, 10, 100])
def test_at_100_per_second_the_search_costs_few_429s(burst: int) -> None:
    """The ten-second sync at 100/s: a few 429s, each a second of pause, and no more (what it
    reaches: 73-88% of the allowed, 68-90% with trials at the middle of the bounds; the told
    source reaches 95%)."""
    result = simulate(100, burst, PAGES)
    assert result.refused <= 5
    assert result.allowed_share >= 0.72


def test_a_limit_that_falls_is_followed() -> None:
    """The store halves its limit a minute in: a few more 429s, then the source holds below the
    new limit and still uses most of it."""
    result = simulate(20, 2, 2000, changes=((60.0, 10.0),))
    late = result.accepted_between(100.0, 140.0)
    assert late >= 0.85 * 10 * 40
    assert result.refused <= 10


def test_a_limit_that_rises_is_followed() -> None:
    """The store doubles its limit half a minute in: a probe finds it held, and the search
    climbs to the new limit within a few minutes (not one probe step per probe interval)."""
    result = simulate(10, 2, 3000, changes=((30.0, 20.0),))
    found = result.throttle.rate.found
    assert found is not None and found >= 18
    end = result.wall
    assert result.accepted_between(end - 60, end) >= 0.85 * 20 * 60


class SavedRates:
    """The part of a store that keeps sources' paces, in memory."""

    def __init__(self) -> None:
        self.saved: SourceRate | None = None

    async def source_rate(self, source: str) -> SourceRate | None:
        return self.saved

    async def save_source_rate(self, rate: SourceRate) -> None:
        self.saved = rate


@pytest.mark.parametrize(
    ("rate", "burst", "rtt"),
    [(5, 2, 0.0), (20, 2, 0.0), (20, 2, 0.02), (100, 10, 0.0), (100, 2, 0.005), (100, 100, 0.0)],
)
def test_the_next_sync_starts_at_the_limit_the_first_found(
    rate: float, burst: int, rtt: float
) -> None:
    """Where the search stands is saved with the source's pace: the next full sync (a new process
    on the same store, a quarter of an hour later) holds the source just below the limit found,
    with no 429 to find it again (at 5/s the 200-s sync outlasts the probe interval: its probe
    may cost a few). Without it the search began afresh from a third above the saved rate:
    83-90% with two 429s at 20/s, 74-87% with one or two at 100/s."""
    rates = SavedRates()
    first = simulate(rate, burst, PAGES, rtt=rtt, rates=rates)
    assert first.refused >= 1
    assert rates.saved is not None and rates.saved.found is not None
    found = rates.saved.found
    assert found.lower < found.upper
    later = first.ended + timedelta(minutes=15)
    second = simulate(rate, burst, PAGES, later, rtt=rtt, rates=rates, seed=2)
    assert second.allowed_share >= 0.91
    assert second.refused <= (3 if rate == 5 else 0)


def test_over_syncs_shorter_than_the_probe_interval_a_raised_limit_is_found() -> None:
    """The first sync settles at the store's 10/s; the store then allows 20/s. Each later sync
    (25 s at the new limit) is shorter than the probe interval (120 s), but the time held at
    the settled rate carries over, so a probe comes due every few syncs and the source climbs
    to the new limit (without that, it stayed at half of it for good)."""
    rates = SavedRates()
    start = simulate(10, 2, PAGES, rates=rates).ended
    shares = []
    for n in range(6):
        start += timedelta(minutes=15)
        later = simulate(20, 2, 500, start, rates=rates, seed=n + 2)
        start = later.ended
        shares.append(later.allowed_share)
    assert shares[0] < 0.6  # held at the old limit until a probe is due
    assert shares[-1] >= 0.9

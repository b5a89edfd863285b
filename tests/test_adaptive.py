"""Adaptive rate maths: multiplicative cuts, stepwise recovery, floors, pure in the clock reading."""

from __future__ import annotations

import itertools

import pytest

from syncd.config import HttpSettings
from syncd.http.adaptive import AdaptiveRate, RateChange, RateTuning
from syncd.store import RateSearch

TUNING = RateTuning(decrease=0.5, recovery_step=0.1, recovery_interval=2.0, floor=0.5)


def test_a_configured_source_is_not_engaged_until_a_429() -> None:
    """Before any 429 the fixed ceiling alone paces the source."""
    rate = AdaptiveRate(TUNING, ceiling=10)
    assert not rate.engaged
    assert rate.recover(1e6) is None


def test_a_429_cuts_the_ceiling_multiplicatively() -> None:
    """The first cut starts from the ceiling, not from what was measured."""
    rate = AdaptiveRate(TUNING, ceiling=10)
    assert rate.cut(now=0, measured=99) == RateChange(None, 5.0, "rate_limited")
    assert rate.cut(now=0.1, measured=99) == RateChange(5.0, 2.5, "rate_limited")


def test_recovery_climbs_a_step_per_interval_then_stays_at_the_ceiling() -> None:
    """+10% of the ceiling every 2 s without a cut, until the ceiling; then it is held, smoothly."""
    rate = AdaptiveRate(TUNING, ceiling=10)
    rate.cut(now=100, measured=0)
    assert rate.recover(101.9) is None
    assert rate.recover(102) == RateChange(5.0, 6.0, "recovering")
    assert rate.recover(103) is None
    assert rate.recover(104) == RateChange(6.0, 7.0, "recovering")
    assert rate.recover(110) == RateChange(7.0, 10.0, "recovered")
    assert rate.rate == 10 and rate.engaged
    assert rate.recover(1000) is None


def test_recovery_counts_from_the_end_of_the_pause() -> None:
    """The Retry-After pause is not time proven at the new rate."""
    rate = AdaptiveRate(TUNING, ceiling=10)
    rate.cut(now=0, measured=0, resume_at=30)
    assert rate.recover(31) is None
    assert rate.recover(32) == RateChange(5.0, 6.0, "recovering")


def test_an_idle_spell_recovers_in_one_change() -> None:
    """Steps due over a long pause are applied at once, as one logged change."""
    rate = AdaptiveRate(TUNING, ceiling=10)
    rate.cut(now=0, measured=0)
    assert rate.recover(6.5) == RateChange(5.0, 8.0, "recovering")
    assert rate.recover(7.9) is None  # the half-interval left over still counts
    assert rate.recover(8.0) == RateChange(8.0, 9.0, "recovering")


SEARCH = RateTuning(decrease=0.5, recovery_interval=2.0, floor=0.1, precision=1.1,
                    proof_requests=4, probe_interval=60.0, probe_step=0.05)  # fmt: skip


def test_an_unconfigured_source_is_cut_from_its_measured_rate() -> None:
    """No ceiling: the first 429 cuts the measured send rate, and remembers it as the bound."""
    rate = AdaptiveRate(SEARCH)
    # Nothing proven yet: cut by `decrease` twice (0.5 * 0.5).
    assert rate.cut(now=0, measured=40) == RateChange(None, 10.0, "rate_limited")
    assert rate.upper == 40 and rate.lower is None


def test_the_descent_is_bounded_by_what_the_store_let_through() -> None:
    """While nothing is proven, the next rate goes no higher than the rate the store accepted in
    the trials since the first pause, read once their answers are in (as sending resumes)."""
    rate = AdaptiveRate(SEARCH)
    rate.sending(0.0, accepted=0)
    rate.cut(now=0.1, measured=150, resume_at=1.1, accepted=2)
    assert rate.sending(1.1, accepted=2) is None  # the descent counts from here
    # 0.5 s of sending in which 2 more answers were accepted: 4/s, below the 37.5 * 0.25 the
    # cut alone gives.
    assert rate.cut(now=1.6, measured=0, resume_at=2.6, accepted=4).new == 9.375
    assert rate.sending(2.6, accepted=4) == RateChange(9.375, 4.0, "rate_limited")


def test_a_held_rate_is_proven_and_the_search_climbs_past_an_unpaced_bound() -> None:
    """Held for the proof time without a 429, the rate becomes the lower bound. The bound from
    the unpaced start is only a rough measure: the search climbs `precision` squared, then
    twice as many powers per proof, and may pass it."""
    rate = AdaptiveRate(SEARCH)
    rate.cut(now=0, measured=40)  # 10/s, bound 40 (measured while unpaced)
    assert rate.recover(1.9) is None
    assert rate.recover(2.0) == RateChange(10.0, 12.1, "proven")
    assert rate.lower == 10
    change = rate.recover(4.0)
    assert change is not None and change.new == round(10 * 1.1**2 * 1.1**4, 6)


def test_below_a_paced_bound_a_trial_near_what_held_is_tried() -> None:
    """A paced rate that drew a 429 bounds the search: the next trial lies a quarter of the way
    (in log terms) from what held to it, since a trial above the limit costs a pause."""
    rate = AdaptiveRate(SEARCH)
    rate.cut(now=0, measured=40)
    rate.recover(2.0)  # 10 held: 12.1 next
    change = rate.cut(now=2.5, measured=0, resume_at=3.5)
    assert rate.upper == pytest.approx(12.1) and rate.lower == 10
    assert change.new == round(10 * 1.21**0.25, 6) and change.reason == "rate_limited"


def test_what_got_through_bounds_the_burst_and_proves_a_limit() -> None:
    """What got through before a 429 bounds the store's burst, and a later trial's answers
    beyond the burst prove the rate the store let through."""
    rate = AdaptiveRate(SEARCH)
    rate.sending(0.0, accepted=0)
    rate.cut(now=0.2, measured=40, resume_at=1.2, accepted=5)  # 5 through in 0.2 s
    rate.sending(1.2, accepted=5)
    assert rate.burst == 6.0
    # 10/s held for the proof time (the burst could hide 8% for 6 / (10 * 0.08) s): 12.1 next.
    assert rate.recover(8.8, accepted=81) is not None
    # The burst is at most the 5 that got through before the first 429, plus one (the unpaced
    # start may have sent below the limit a while: what the store refilled is not known).
    assert rate.burst == 6.0
    # 12.1/s for 10 s: 121 answers, then a 429. At most 6 came from the bucket: >= 11.5/s.
    rate.cut(now=18.8, measured=0, resume_at=19.8, accepted=202)
    change = rate.sending(19.8, accepted=202)
    assert rate.lower == pytest.approx(11.5)
    assert change is not None and change.reason == "proven"


def test_the_search_settles_below_the_limit_and_stays_there() -> None:
    """A store whose limit is 23/s: every rate above it draws a 429 at once. The search ends
    within the precision below the limit and does not swing back over it."""
    rate = AdaptiveRate(SEARCH)
    limit, now, refused = 23.0, 0.0, 0
    rate.cut(now=now, measured=200)
    trace: list[float] = []
    while now < 600:
        now += 0.5
        rate.recover(now)
        current = rate.rate
        assert current is not None
        trace.append(current)
        if current > limit:
            refused += 1
            rate.cut(now=now, measured=0, resume_at=now + 1)
    settled = trace[len(trace) // 5 :]
    # Below the limit and within the precision of it, but for the rare probe above it.
    assert min(settled) >= limit / SEARCH.precision
    assert sum(1 for r in settled if r > limit) <= len(settled) * 0.02
    assert refused <= 8
    # Probes are rare: 600 s at the settled rate drew at most a few of them.
    assert sum(1 for a, b in itertools.pairwise(settled) if b > a) <= 5


def settled_below(limit: float) -> tuple[AdaptiveRate, float]:
    """A rate cut once from 21/s that searched down to a store whose limit is `limit`, and the
    time its search settled at."""
    rate = AdaptiveRate(SEARCH)
    rate.cut(now=0, measured=21)
    now = 0.0
    while not (rate.rate == rate.lower and rate.upper <= rate.lower * SEARCH.precision):  # type: ignore[operator]
        now += 2
        rate.recover(now)
        if rate.rate > limit:  # type: ignore[operator]
            rate.cut(now=now, measured=0)
        assert now < 100
    return rate, now


def test_a_failed_probe_doubles_the_wait_for_the_next() -> None:
    """Settled, the source probes after `probe_interval`; a probe that draws a 429 makes the
    next one wait twice as long."""
    rate, now = settled_below(9.9)  # the store's limit: 9.9/s
    settled = now
    assert rate.recover(settled + 59) is None
    probe = rate.recover(settled + 60)
    assert probe is not None and probe.reason == "probing" and probe.new > probe.old  # type: ignore[operator]
    rate.cut(now=settled + 60.5, measured=0)  # the probe failed: back to what held
    assert rate.rate == rate.lower
    assert rate.recover(settled + 60.5 + 119) is None
    assert rate.recover(settled + 60.5 + 120).reason == "probing"  # type: ignore[union-attr]


def test_a_held_probe_climbs_from_the_smallest_step() -> None:
    """A probe that holds starts a climb at `precision` squared above it, however many proofs
    the search took before settling (each doubled its step: the climb leapt 6x at 5/s)."""
    rate, now = settled_below(9.9)  # the store's limit: 9.9/s
    probe = rate.recover(now + 60)
    assert probe is not None and probe.reason == "probing"
    climb = rate.recover(now + 62)  # held: the store's limit rose
    assert climb is not None and climb.reason == "proven"
    assert climb.new == pytest.approx(probe.new * SEARCH.precision**2, rel=1e-6)  # type: ignore[operator]


def test_a_429_at_the_proven_rate_steps_down_below_it() -> None:
    """The store lowered its limit (or the proof was too short): the rate that held is no bound
    any more; the source steps down below it at once."""
    rate = AdaptiveRate(SEARCH)
    rate.cut(now=0, measured=21)
    rate.recover(2)
    assert rate.lower == 5.25
    rate.rate = rate.lower
    change = rate.cut(now=3, measured=0)
    assert change.new == round(5.25 / 1.1**2, 6) == round(rate.lower, 6)


def test_cuts_never_go_below_the_floor() -> None:
    """However many 429s, the source keeps making progress at the floor rate."""
    rate = AdaptiveRate(TUNING, ceiling=2)
    for second in range(10):
        rate.cut(now=second, measured=0)
    assert rate.rate == 0.5


def test_tuning_comes_from_the_http_settings() -> None:
    """Every knob is read from [http]."""
    tuning = RateTuning.from_settings(
        HttpSettings(
            rate_decrease=0.6, rate_recovery_step=0.2, rate_recovery_interval=3, rate_floor=1
        )
    )
    assert tuning == RateTuning(0.6, 0.2, 3.0, 1.0)


@pytest.mark.parametrize("decrease", [0.0, 1.0, 1.5])
def test_a_cut_must_cut(decrease: float) -> None:
    """A decrease factor outside (0, 1) is refused."""
    with pytest.raises(ValueError, match="decrease"):
        RateTuning(decrease=decrease)


def test_a_settled_search_resumes_held_below_the_limit_it_found() -> None:
    """A new owner given a settled search holds the source 3% below the proven rate (proven only
    to within that margin), with no trial above it; its `search` is what was given."""
    found = RateSearch(100.0, 108.0, 10.0)
    rate = AdaptiveRate(RateTuning())
    rate.resume(100.0, now=50.0, search=found)
    assert rate.rate == pytest.approx(100 / 1.03)
    assert (rate.lower, rate.upper, rate.burst) == (100.0, 108.0, 10.0)
    assert rate.search == found
    assert rate.recover(50.0 + RateTuning().probe_interval - 1) is None  # held until the probe


def test_an_unsettled_search_resumes_its_trial() -> None:
    """Bounds still apart: the saved trial rate goes on being proven between them (no cut to
    below the proven rate), and a bound on the burst that was still loose is not carried."""
    rate = AdaptiveRate(RateTuning())
    rate.resume(90.0, now=0.0, search=RateSearch(80.0, 120.0, 186.0))
    assert (rate.rate, rate.lower, rate.upper, rate.burst) == (90.0, 80.0, 120.0, None)
    change = rate.recover(RateTuning().proof_time(90.0, margin=0.0) + 0.01)
    assert change is not None and change.reason == "proven" and rate.lower == 90.0


def test_without_a_search_the_resumed_rate_searches_from_a_cut_above() -> None:
    """An older store saved no search: the rate before one cut stands in for its upper bound."""
    rate = AdaptiveRate(RateTuning())
    rate.resume(60.0, now=0.0)
    assert (rate.rate, rate.lower, rate.upper) == (60.0, None, 80.0)
    assert rate.search is None


def test_a_settled_search_keeps_the_time_it_has_held_over_runs() -> None:
    """Held 100 s of the 120-s probe interval in earlier runs: the probe is due 20 s into this
    one, not 120 s; `held_for` counts on from there, and is 0 once the search moves."""
    tuning = RateTuning()
    rate = AdaptiveRate(tuning)
    rate.resume(97.0, now=1000.0, search=RateSearch(100.0, 108.0, 10.0, held=100.0))
    assert rate.held_for(1010.0) == pytest.approx(110.0)
    assert rate.recover(1019.9) is None
    change = rate.recover(1020.0)
    assert change is not None and change.reason == "probing"
    assert rate.held_for(1021.0) == 0.0

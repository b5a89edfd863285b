"""Adaptive rate maths: multiplicative cuts, stepwise recovery, floors, pure in the clock reading."""

from __future__ import annotations

import pytest

from syncd.config import HttpSettings
from syncd.http.adaptive import AdaptiveRate, RateChange, RateTuning

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


def test_an_unconfigured_source_is_cut_from_its_measured_rate_and_released() -> None:
    """No ceiling: the measured send rate is cut, recovered to, and then pacing stops."""
    rate = AdaptiveRate(TUNING)
    assert rate.cut(now=0, measured=40) == RateChange(None, 20.0, "rate_limited")
    assert rate.recover(8) == RateChange(20.0, 36.0, "recovering")
    assert rate.recover(10) == RateChange(36.0, None, "recovered")
    assert not rate.engaged
    assert rate.cut(now=21, measured=8) == RateChange(None, 4.0, "rate_limited")


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

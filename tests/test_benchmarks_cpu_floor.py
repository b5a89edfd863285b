"""The CPU floor is read from `benchmarks cpu-ab` records: met only when both summaries reach it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.floors import cpu


def record(
    ratios: Sequence[float], before: Sequence[float], after: Sequence[float]
) -> dict[str, Any]:
    """A cpu-ab record with these pairs (products per CPU second of each side)."""
    pairs = [
        {"before": {"products_per_cpu_s": b}, "after": {"products_per_cpu_s": a}, "ratio": r}
        for r, b, a in zip(ratios, before, after, strict=True)
    ]
    median_before, median_after = sorted(before)[len(before) // 2], sorted(after)[len(after) // 2]
    return {
        "case": "cpu-ab-nolimit-100k",
        "before": {"commit": "77c716d"},
        "pairs": pairs,
        "median_pair_ratio": sorted(ratios)[len(ratios) // 2],
        "median_before": median_before,
        "median_after": median_after,
        "ratio_of_medians": round(median_after / median_before, 3),
    }


def test_both_summaries_at_the_floor_meet_it() -> None:
    (check,) = cpu([record([1.6, 1.5, 1.7], [10_000, 10_000, 10_000], [16_000, 15_000, 17_000])])
    assert check.ok is True
    assert "1.60x" in check.measured


def test_one_summary_below_the_floor_misses_it() -> None:
    """Pairs at 1.55x but the sides' medians 1.41x (the last stop's set): not met."""
    ratios = [1.10, 1.63, 1.35, 1.43, 1.55, 1.58, 1.64]
    before = [10_066, 14_192, 13_908, 12_499, 13_265, 11_754, 14_206]
    after = [11_065, 23_144, 18_752, 17_894, 20_625, 18_573, 23_282]
    (check,) = cpu([record(ratios, before, after)])
    assert check.ok is False


def test_a_comparison_against_another_commit_is_no_check() -> None:
    other = record([2.0], [10_000], [20_000])
    other["before"]["commit"] = "8ea73b5"
    assert cpu([other]) == []

"""A full scan's checkpoint: the committed page numbers as ranges, and back."""

from __future__ import annotations

import json
import random
from dataclasses import replace

from syncd.checkpoint import FullScanCheckpoint, from_ranges, to_ranges
from tests.clocks import FakeClock


def _runs_one_by_one(numbers: set[int]) -> list[list[int]]:
    """The definition: consecutive numbers, taken in order, one at a time."""
    ranges: list[list[int]] = []
    for n in sorted(numbers):
        if ranges and n == ranges[-1][1] + 1:
            ranges[-1][1] = n
        else:
            ranges.append([n, n])
    return ranges


def test_ranges_are_the_runs_of_consecutive_numbers() -> None:
    """Random sets, most of them a prefix with stragglers as a scan leaves them, give the runs."""
    rng = random.Random(17)
    assert to_ranges([]) == []
    assert to_ranges([4, 4, 3, 9]) == [[3, 4], [9, 9]]
    for _ in range(2_000):
        numbers = set(range(1, rng.randint(1, 300))) | set(
            rng.sample(range(1, 400), rng.randint(0, 40))
        )
        ranges = to_ranges(numbers)
        assert ranges == _runs_one_by_one(numbers)
        assert from_ranges(ranges) == numbers


def test_a_checkpoint_decodes_to_itself() -> None:
    """Every field survives the column's JSON, the pages done among them."""
    done = frozenset({*range(1, 120), 125, 126, 300})
    checkpoint = FullScanCheckpoint(7, FakeClock().now(), 100, 30_000, done, mutated=True)
    assert FullScanCheckpoint.decode(checkpoint.encode()) == checkpoint
    assert '"done":[[1,119],[125,126],[300,300]]' in checkpoint.encode()


def test_an_implicit_scans_checkpoint_is_no_checkpoint_to_a_reader_before_it() -> None:
    """A first scan's checkpoint (implicit marks) decodes to itself, but spells its scan id
    differently: a syncd from before implicit marks, which requires `scan_id`, would resume it
    as if the products without marks were unseen; finding no `scan_id`, it scans afresh."""
    checkpoint = FullScanCheckpoint(7, FakeClock().now(), 100, None, frozenset({1}), implicit=True)
    assert FullScanCheckpoint.decode(checkpoint.encode()) == checkpoint
    data = json.loads(checkpoint.encode())
    assert "scan_id" not in data and data["first_scan_id"] == 7
    explicit = replace(checkpoint, implicit=False)
    assert json.loads(explicit.encode())["scan_id"] == 7
    assert FullScanCheckpoint.decode(explicit.encode()) == explicit

"""The harness's pause between repeats of a call-window case (benchmarks/runner.py)."""

from __future__ import annotations

import random
from pathlib import Path

from benchmarks.plan import PROFILES, Plan
from benchmarks.runner import Runner


def test_call_window_repeats_start_in_a_new_window_at_spread_phases(tmp_path: Path) -> None:
    """Each pause outlasts a window (the previous repeat's calls are not in the next one's
    first window) and the phases it leaves differ; a rate-limited case does not wait."""
    slept: list[float] = []
    runner = Runner(Plan(), tmp_path, rng=random.Random(3), sleep=slept.append)
    ac5 = PROFILES["ac5"]
    for _ in range(20):
        runner._next_window(ac5)
    runner._next_window(PROFILES["rate20"])
    runner._next_window(PROFILES["nolimit"])
    assert len(slept) == 20
    assert all(ac5.window <= s < 2 * ac5.window for s in slept)
    phases = sorted(s - ac5.window for s in slept)
    # Spread over the window, not one phase drifting by a second per repeat.
    assert phases[0] < ac5.window / 4 and phases[-1] > 3 * ac5.window / 4

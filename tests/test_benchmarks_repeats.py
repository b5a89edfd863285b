"""The harness's pause between repeats of a call-window case (benchmarks/runner.py), and the
settings its syncd client runs with (benchmarks/syncd_client.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.plan import PROFILES, Plan
from benchmarks.runner import Runner
from benchmarks.syncd_client import parser, settings


def test_call_window_repeats_start_in_a_new_window_at_spread_phases(tmp_path: Path) -> None:
    """Each pause between repeats outlasts a window (the previous repeat's calls are not in the
    next one's first window), the first repeat's is under one, and the phases they leave differ
    (the first repeat's too: it once always began about a second into a window); a
    rate-limited case does not wait."""
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
    firsts: list[float] = []
    for seed in range(20):
        first = Runner(Plan(), tmp_path, rng=random.Random(seed), sleep=firsts.append)
        first._next_window(ac5, first=True)
    assert all(0 <= s < ac5.window for s in firsts)
    assert min(firsts) < ac5.window / 4 and max(firsts) > 3 * ac5.window / 4


@pytest.mark.parametrize("store", [["--store-url", "postgresql://bench@127.0.0.1:5432/b"], []])
def test_the_benchmark_client_runs_on_the_store_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: list[str]
) -> None:
    """An operator's SYNCD_STORE__* variables in the shell do not move a benchmark run into
    another database (a variable once replaced the whole store section: the PostgreSQL runs
    went to ./syncd.db and measured nothing)."""
    monkeypatch.setenv("SYNCD_STORE__URL", "postgresql://prod@127.0.0.1:5432/production")
    monkeypatch.setenv("SYNCD_STORE__POOL_SIZE", "6")
    db = tmp_path / "bench.db"
    endpoints = ["--url", "http://127.0.0.1:1", "--token-url", "http://127.0.0.1:1/t"]
    args = parser().parse_args([*endpoints, "--db", str(db), "--kind", "full", *store])
    got = settings(args).store
    assert got.pool_size == 4
    if store:
        assert got.url == store[1]
    else:
        assert got.url is None and got.path == db

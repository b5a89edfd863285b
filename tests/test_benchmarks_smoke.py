"""The benchmark harness at a tiny size: it runs end to end and writes sane JSON and a report.

No timings are asserted: benchmarks measure, tests only check that the harness works.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.floors import all_checks
from benchmarks.metrics import delta, run_figures
from benchmarks.outcome import ClientOutcome
from benchmarks.plan import PROFILES, Plan, Profile
from benchmarks.report import write_report
from benchmarks.runner import Runner
from benchmarks.stages import OTHER, stage_seconds
from benchmarks.stores import STORES, medians
from tests.postgres_support import server_url

SIZE = 300


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny case (no limit), one AmeriCommerce plan on a half-second window, and a two-point
    sweep, run once for the module."""
    out = tmp_path_factory.mktemp("results")
    plan = Plan(
        sizes=(SIZE,),
        profiles=(PROFILES["nolimit"], replace(PROFILES["ac10"], window=0.5)),
        sweep=(1, 2),
        sweep_repeats=1,
        repeats=1,
        time_box=5.0,
        pin=False,
        profile_stages=False,
    )
    Runner(plan, out).run("python -m benchmarks run --sizes 300")
    return out


@pytest.mark.timeout(120)
def test_a_case_records_full_incremental_and_baseline(results: Path) -> None:
    """The case file holds a full sync of every product, an incremental run of the 1% changed,
    and the baseline, each with counts the emulator confirms."""
    record = json.loads((results / "nolimit-300.json").read_text())
    runs = {(r["tool"], r["kind"]): r for r in record["runs"]}
    full, inc, base = (
        runs["syncd", "full"],
        runs["syncd", "incremental"],
        runs["baseline", "full"],
    )
    assert record["changed"] == 3
    assert full["status"] == "succeeded" and full["products"] == full["stored"] == SIZE
    assert full["served_requests"] >= full["pages"] == 3
    assert inc["status"] == "succeeded" and inc["products"] >= record["changed"]
    assert base["products"] == base["stored"] == SIZE and base["served_requests"] == 3
    assert (full["token_requests"], inc["token_requests"], base["token_requests"]) == (1, 0, 1)
    for run in runs.values():
        assert run["cpu_s"] > 0 and run["peak_rss_mb"] > 0 and run["served_429"] == 0
        assert run["allowed_share"] is None  # no rate limit in this profile


@pytest.mark.timeout(120)
def test_the_sweep_runs_each_concurrency_and_the_baseline(results: Path) -> None:
    """The sweep file has syncd at each concurrency asked for, plus the baseline at one."""
    record = json.loads((results / "sweep-latency50-300.json").read_text())
    assert [(r["tool"], r["concurrency"]) for r in record["runs"]] == [
        ("syncd", 1),
        ("syncd", 2),
        ("baseline", 1),
        ("baseline", 8),
    ]
    assert all(r["products"] == SIZE for r in record["runs"])
    assert all(r["process_wall_s"] >= r["wall_s"] for r in record["runs"])


@pytest.mark.timeout(120)
def test_an_americommerce_plan_is_shared_with_another_app(results: Path) -> None:
    """The plan's case: syncd reads every product through the window another app also uses,
    and a sync smaller than its share runs too; the floors judge both."""
    record = json.loads((results / "ac10-300.json").read_text())
    (full,) = [r for r in record["runs"] if r["kind"] == "full"]
    assert full["status"] == "succeeded" and full["stored"] == SIZE
    assert full["other_app_calls"] > 0 and full["allowed_share"] is not None
    assert record["small"]["served_requests"] >= 1 and record["small"]["window_s"] == 0.5
    floors = {c.floor for c in all_checks([record])}
    assert "call window: >= 90% of the free calls, 0 429s" in floors


@pytest.mark.timeout(120)
def test_the_report_is_generated_from_the_json(results: Path, tmp_path: Path) -> None:
    """The markdown shows every run's row and the floors; the chart exists with matplotlib."""
    doc = tmp_path / "PERFORMANCE.md"
    written = write_report(results, doc)
    text = doc.read_text()
    assert "## Floors" in text and "### nolimit-300" in text
    assert "| syncd incremental (c=8) | succeeded |" in text
    assert "| baseline full (c=1) | succeeded | 300 |" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in written)


def _outcome(**changes: object) -> ClientOutcome:
    fields: dict[str, object] = {
        "tool": "syncd", "kind": "full", "status": "succeeded", "concurrency": 8,
        "wall_s": 10.0, "cpu_s": 2.0, "peak_rss_mb": 60.0, "products": 10_000, "pages": 100,
        "requests": 100, "rate_limited": 0, "stored": 10_000,
    }  # fmt: skip
    fields.update(changes)
    return ClientOutcome(**fields)  # type: ignore[arg-type]


def test_allowed_share_counts_only_accepted_requests_against_burst_plus_rate() -> None:
    """% of allowed = accepted requests / (burst + rate x wall); 429s do not count as used."""
    profile = Profile("rate20", rate=20.0, burst=20)
    served = {"requests": 220, "rate_limited": 10, "token_requests": 1, "cpu_s": 0.5}
    row = run_figures(_outcome(), served, profile)
    assert row["allowed_share"] == round(210 / (20 + 20 * 10.0), 4)
    assert row["share_429"] == round(10 / 220, 4)
    assert row["cpu_s_per_10k"] == 2.0
    assert run_figures(_outcome(), served, PROFILES["nolimit"])["allowed_share"] is None


def test_the_call_window_measure_counts_the_windows_a_run_touched() -> None:
    """AmeriCommerce (share 7 of 10): a finished run is judged on the windows from its first
    call's to its last's, the last one only for what it still needed; a time-boxed run on
    w / window + 1 windows (the average over where its box starts), each a whole share."""
    profile = PROFILES["ac10"]
    before = {"requests": 0, "rate_limited": 0, "token_requests": 0, "cpu_s": 0.0,
              "client_window_calls": {"3": 5}}  # fmt: skip
    after = {"requests": 101, "rate_limited": 0, "token_requests": 1, "cpu_s": 0.1,
             "client_window_calls": {"3": 5, **{str(i): 7 for i in range(4, 18)}, "18": 3}}  # fmt: skip
    served = delta(before, after)
    assert (served["run_windows"], served["last_window_calls"]) == (15, 3)
    done = run_figures(_outcome(wall_s=140.2), served, profile)
    assert done["allowed_share"] == round(101 / (7 * 14 + 3), 4) == 1.0
    boxed = run_figures(_outcome(wall_s=140.2, time_boxed=True), served, profile)
    assert boxed["allowed_share"] == round(101 / (7 * (140.2 / 10 + 1)), 4)
    # A sync done inside its first window is not marked down for the share it did not need.
    small = delta(before, {**after, "requests": 6, "client_window_calls": {"3": 5, "4": 6}})
    assert run_figures(_outcome(wall_s=0.3), small, profile)["allowed_share"] == round(6 / 6, 4)
    # The run before this one had spent 5 of the first window's 7 calls: 2 were free.
    calls = {"3": 7, "4": 7, "5": 7, "6": 3}
    late = delta(before, {**after, "requests": 19, "client_window_calls": calls})
    assert late["first_window_taken"] == 5
    assert run_figures(_outcome(), late, profile)["allowed_share"] == round(19 / (2 + 7 + 7 + 3), 4)


def test_floors_fail_when_the_figures_miss_them() -> None:
    """A rate-limited run at 50% of the allowed rate, and a second token request, are not met."""
    row = run_figures(
        _outcome(),
        {"requests": 110, "rate_limited": 5, "token_requests": 2, "cpu_s": 0.1},
        Profile("rate20", rate=20.0, burst=20),
    )
    record = {
        "case": "rate20-10k", "kind": "case", "products": 10_000, "page_size": 100,
        "profile": {"name": "rate20", "rate": 20.0, "burst": 20, "latency_s": 0.0},
        "runs": [row],
    }  # fmt: skip
    verdicts = {c.floor.split(":")[0]: c.ok for c in all_checks([record])}
    assert verdicts["rate limit"] is False and verdicts["tokens"] is False


class _Frame:
    def __init__(self, function: str, time: float, children: list[_Frame], path: str = "") -> None:
        self.function, self.time, self.children, self.file_path = function, time, children, path


def test_stage_seconds_give_own_time_to_the_innermost_stage() -> None:
    """make_record inside to_record counts as hashing; to_record's own time as mapping."""
    tree = _Frame(
        "run",
        10.0,
        [
            _Frame("to_record", 4.0, [_Frame("make_record", 3.0, [])]),
            _Frame("loads", 2.0, [], "/usr/lib/python3.11/json/__init__.py"),
            _Frame("poll", 1.0, []),
        ],
    )
    stages = stage_seconds(tree)
    assert stages["hash + serialise"] == 3.0 and stages["map fields"] == 1.0
    assert stages["parse JSON"] == 2.0 and stages[OTHER] == 3.0
    assert sum(stages.values()) == 10.0


def test_the_report_names_the_bounding_stage(results: Path, tmp_path: Path) -> None:
    """With a profiled run in the results, the report names the stage with the most CPU."""
    record = json.loads((results / "nolimit-300.json").read_text())
    full = next(r for r in record["runs"] if r["tool"] == "syncd" and r["kind"] == "full")
    full.update(main_thread_cpu_s=0.03, other_threads_cpu_s=0.012, products=300)
    record["stages"] = {
        "profile_text": "profile-nolimit-300.txt", "products": 300, "wall_s": 0.1,
        "main_thread_cpu_s": 0.03, "sqlite_thread_cpu_s": 0.012,
        "main_thread_stages_s": {"parse JSON": 0.02, "hash + serialise": 0.01, OTHER: 0.0,
                                 "idle (waiting on network or SQLite)": 0.07},
    }  # fmt: skip
    staged = tmp_path / "results"
    staged.mkdir()
    (staged / "nolimit-300.json").write_text(json.dumps(record))
    doc = tmp_path / "PERFORMANCE.md"
    write_report(staged, doc)
    text = doc.read_text()
    assert "**Bounding stage: parse JSON** (48% of the CPU per product)" in text
    assert "| SQLite upsert (aiosqlite thread CPU) | 40.0 | 29% |" in text


def test_a_run_inside_the_stores_burst_is_not_judged_against_the_rate() -> None:
    """100 requests against a burst of 100: the limit never applied, so the floor is n/a."""
    row = run_figures(
        _outcome(wall_s=1.0),
        {"requests": 100, "rate_limited": 0, "token_requests": 1, "cpu_s": 0.1},
        Profile("rate100", rate=100.0, burst=100),
    )
    record = {
        "case": "rate100-10k", "kind": "case", "products": 10_000, "page_size": 100,
        "profile": {"name": "rate100", "rate": 100.0, "burst": 100, "latency_s": 0.0},
        "runs": [row],
    }  # fmt: skip
    (check,) = [c for c in all_checks([record]) if c.floor.startswith("rate limit")]
    assert check.ok is None and check.measured.startswith("n/a: all 100 requests fit")


def test_the_many_stores_floors_read_the_fleet_figures() -> None:
    """RSS per idle source (or, with no idle moment, at the end) under 2 MB; p95 start delay of
    the runs after the first under 1 s."""
    figures = {
        "runs": 2000, "rss_start_mb": 56.0, "rss_idle_mb": None, "rss_per_idle_source_mb": None,
        "rss_per_source_end_mb": 2.5, "rss_per_source_scheduled_mb": 0.05,
        "start_delay_p50_s": 0.01, "start_delay_p95_s": 0.2, "start_delay_max_s": 0.9,
        "first_start_delay_p95_s": 3.0, "loop_lag_p95_ms": 10.0, "loop_lag_max_ms": 500.0,
        "cpu_s_per_run": 0.03,
    }  # fmt: skip
    record = {"case": "fleet-1000", "kind": "fleet", "profile": {"platform": "americommerce"},
              "products": 1000, "runs": [], "figures": figures}  # fmt: skip
    verdicts = {c.floor: (c.ok, c.measured) for c in all_checks([record])}
    rss_ok, rss_text = verdicts["many stores: RSS < 2 MB per idle source"]
    assert rss_ok is False and "at the end" in rss_text
    assert verdicts["many stores: p95 start delay < 1 s"][0] is True


def test_the_stores_medians_are_per_store_and_per_sync() -> None:
    """First and second syncs are summarised apart; a record from before the second sync (runs
    without `sync`) reads as first syncs."""
    runs = [
        {"store": store, "sync": sync, "products_per_s": float(n)}
        for n, (store, sync) in enumerate(
            (s, y) for y in ("first", "second") for s in STORES for _ in range(3)
        )
    ]
    assert medians(runs, "first") == {"sqlite": 1.0, "postgres": 4.0, "postgres-nofeed": 7.0}
    assert medians(runs, "second") == {"sqlite": 10.0, "postgres": 13.0, "postgres-nofeed": 16.0}
    old = [{"store": s, "products_per_s": 5.0} for s in STORES]
    assert medians(old, "first") == dict.fromkeys(STORES, 5.0)


def test_the_plans_benchmark_runs_both_scenes(tmp_path: Path, postgres_database: str) -> None:
    """(`postgres_database`: skips, or fails under CI, without a server.)"""
    from benchmarks.pgplans import main as pgplans

    argv = ["--products", "300", "--postgres", server_url(), "--results", str(tmp_path)]
    assert pgplans(argv) == 0
    record = json.loads((tmp_path / "pgplans-300.json").read_text())
    assert len(record["syncs_s"]["marks"]) == 4
    assert len(record["syncs_s"]["new-source"]) == 15
    assert all(seconds > 0 for seconds in record["syncs_s"]["marks"])


def test_the_server_core_placement_moves_the_whole_server_and_puts_it_back(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`stores --server-core` confines the postmaster and every process of it, then restores
    them, even when the runs fail (the affinity calls are recorded here, not made)."""
    import os

    from benchmarks import stores

    moved: list[tuple[int, set[int]]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: moved.append((pid, set(cpus))))
    confined: dict[int, set[int]] = {}

    def runs_that_fail() -> None:
        with stores.server_on(server_url(), 1):
            confined.update(moved)
            raise ValueError("the runs failed")

    with pytest.raises(ValueError, match="the runs failed"):
        runs_that_fail()
    restored = dict(moved[len(confined) :])
    # The postmaster and its processes (its background workers, at least), all on CPU 1 while
    # the runs went on, then every one of them still running back where it was (a backend of
    # another connection may have ended in between).
    assert len(confined) >= 2
    assert all(cpus == {1} for cpus in confined.values())
    still_running = {pid for pid in confined if Path(f"/proc/{pid}").exists()}
    assert still_running <= set(restored) and len(still_running) >= 2
    assert all(cpus == {0, 1} for cpus in restored.values())

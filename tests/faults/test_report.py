"""The reliability report: one row per scenario, rendered only from complete results, and current:
the committed report is what the committed results render to, and this session's run of the fault
suite reproduces the committed rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.faults.lab import ScenarioResult
from tests.faults.report import (
    REPORT,
    RESULTS,
    ReportError,
    drift,
    load,
    render,
    run_suite,
    stable_cells,
)
from tests.faults.scenarios import SCENARIO_IDS, SCENARIOS


def result(scenario: str, **figures: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scenario": scenario,
        "faults": ["every API answer: HTTP 503", "every token revoked"],
        "runs": ["succeeded", "failed (HTTP 503)", "succeeded"],
        "requests": 12,
        "retries": 3,
        "rate_limited": 1,
        "token_requests": 2,
        "faults_injected": 4,
        "lost": 0,
        "duplicated": 0,
        "tombstoned": 0,
        "longest_run": 1.5,
        "credentials": "none leaked",
        "outcome": "recovered",
        "wall_seconds": 0.5,
    }
    return base | figures


def table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_one_row_per_scenario_in_order_with_the_measured_figures() -> None:
    """Rows follow scenarios.py; each carries that scenario's own numbers."""
    results = [result(s.id, requests=index) for index, s in enumerate(SCENARIOS)]
    rows = table_rows(render(list(reversed(results)), suite_seconds=12.3))
    assert [row[0] for row in rows] == [f"`{s.id}`" for s in SCENARIOS]
    assert [int(row[3]) for row in rows] == list(range(len(SCENARIOS)))
    assert rows[0][1] == "every API answer: HTTP 503; every token revoked"
    assert rows[0][2] == "succeeded → failed (HTTP 503) → succeeded"


def test_a_missing_scenario_refuses_the_report() -> None:
    """A scenario without results cannot be reported as passed."""
    with pytest.raises(ReportError, match=SCENARIOS[-1].id):
        render([result(s.id) for s in SCENARIOS[:-1]])


@pytest.mark.parametrize("bad", ["twice", "unknown"])
def test_duplicate_or_unknown_results_are_refused(bad: str) -> None:
    """Two results for one scenario, or one for a scenario not listed, are errors."""
    results = [result(s.id) for s in SCENARIOS]
    results.append(result(SCENARIOS[0].id if bad == "twice" else "no-such-scenario"))
    with pytest.raises(ReportError, match="twice" if bad == "twice" else "unknown"):
        render(results)


def test_the_committed_report_has_exactly_the_scenarios_and_lost_nothing() -> None:
    """docs/RELIABILITY.md lists every scenario once, in order, with 0 lost, 0 duplicated, no
    live product tombstoned and no credential leaked."""
    rows = table_rows(REPORT.read_text(encoding="utf-8"))
    assert [row[0] for row in rows] == [f"`{s.id}`" for s in SCENARIOS]
    assert all(row[8] == "0" and row[9] == "0" and row[10] == "0" for row in rows)
    assert all(row[-2] == "none leaked" for row in rows)
    assert all(re.fullmatch(r"\d+", row[3]) for row in rows)


def test_the_committed_report_is_what_the_committed_results_render_to() -> None:
    """docs/RELIABILITY.md is exactly the render of tests/faults/results.json: not edited by hand,
    and regenerated since the renderer or scenarios.py last changed."""
    results, seconds = load(RESULTS)
    assert render(results, seconds) == REPORT.read_text(encoding="utf-8"), (
        "docs/RELIABILITY.md is stale: run python -m tests.faults.report --run"
    )


def test_drift_names_every_row_that_changed() -> None:
    """A fresh result that differs in what every run must reproduce, or is missing, is named."""
    committed = [result(s.id) for s in SCENARIOS[:3]]
    fresh = [
        result(SCENARIOS[0].id),
        result(SCENARIOS[1].id, runs=["succeeded"], requests=99),
        result("new-scenario"),
    ]
    assert drift(fresh, committed) == [
        "new-scenario: not in the committed results",
        f"{SCENARIOS[2].id}: no fresh result",
        f"{SCENARIOS[1].id}: runs was ['succeeded', 'failed (HTTP 503)', 'succeeded'], "
        "now ['succeeded']",
    ]  # the request count may move between runs: not a change


def test_a_failed_suite_still_renders_its_rows_under_a_warning() -> None:
    """A scenario whose data was not intact is rendered as such: the report can show a failure."""
    results = [result(s.id) for s in SCENARIOS]
    results[0] = result(SCENARIOS[0].id, outcome="every run succeeded; DATA NOT INTACT", lost=7)
    leaked = "client secret 0 in log output"
    results[1] = result(
        SCENARIOS[1].id, outcome="1 run failed; CREDENTIAL LEAKED", credentials=leaked
    )
    text = render(results, failed=1)
    assert "THE FAULT SUITE FAILED (pytest exit 1)" in text
    row = table_rows(text)[0]
    assert row[8] == "7" and row[-1] == "every run succeeded; DATA NOT INTACT"
    assert table_rows(text)[1][-2:] == [leaked, "1 run failed; CREDENTIAL LEAKED"]


def fresh_results(session: list[ScenarioResult], scratch: Path) -> list[dict[str, Any]]:
    """Every scenario's result from this session, or from a fresh run of the suite when this
    session did not run them all (never the committed results file)."""
    if {r.scenario for r in session} == SCENARIO_IDS:
        return [r.to_json() for r in session]
    path = scratch / "results.json"
    _, status = run_suite(path)
    assert status == 0, f"the fault suite failed (pytest exit {status})"
    results, _ = load(path)
    return results


def test_this_session_reproduces_the_committed_rows(
    fault_results: list[ScenarioResult], tmp_path: Path
) -> None:
    """A fresh run of the fault suite (this session's, which ran before this test, or a new one)
    renders the committed docs/RELIABILITY.md's rows: the same faults, runs, outcome, nothing
    lost, duplicated or tombstoned wrongly."""
    fresh = render(fresh_results(fault_results, tmp_path))
    committed = stable_cells(REPORT.read_text(encoding="utf-8"))
    now = stable_cells(fresh)
    changes = [
        f"{scenario}: was {committed.get(scenario)}, now {now.get(scenario)}"
        for scenario in sorted(committed.keys() | now.keys())
        if committed.get(scenario) != now.get(scenario)
    ]
    assert not changes, "run python -m tests.faults.report --run:\n" + "\n".join(changes)

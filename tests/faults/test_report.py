"""The reliability report: one row per scenario, rendered only from complete results, and current:
the committed report is what the committed results render to, and this session's run of the fault
suite reproduces the committed rows."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.faults.lab import ScenarioResult
from tests.faults.report import REPORT, RESULTS, ReportError, drift, load, render
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
    """docs/RELIABILITY.md lists every scenario once, in order, with 0 lost and 0 duplicated."""
    rows = table_rows(REPORT.read_text(encoding="utf-8"))
    assert [row[0] for row in rows] == [f"`{s.id}`" for s in SCENARIOS]
    assert all(row[8] == "0" and row[9] == "0" for row in rows)
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


def test_this_session_reproduces_the_committed_rows(fault_results: list[ScenarioResult]) -> None:
    """Every scenario of this session (this test runs after them) found what the committed
    report says: the same faults, runs, outcome, nothing lost or duplicated."""
    ran = {r.scenario for r in fault_results}
    if ran != SCENARIO_IDS:
        pytest.skip(f"{len(ran)} of {len(SCENARIO_IDS)} scenarios ran: run tests/faults whole")
    committed, _ = load(RESULTS)
    changes = drift([r.to_json() for r in fault_results], committed)
    assert not changes, "run python -m tests.faults.report --run:\n" + "\n".join(changes)

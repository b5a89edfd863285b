"""deploy/grafana's dashboard cannot drift: every panel query names metrics, labels, log events
and fields that syncd really emits, and every panel says what it answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from syncd.log_events import DOC
from tests.logql import grouping, pipelines
from tests.test_monitoring_catalogue import families, logged_fields

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "syncd-dashboard.json"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def targets(kind: str) -> list[tuple[str, str]]:
    """(panel title, query) of every target whose data source is of `kind`."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        if target["datasource"]["type"] == kind
    ]


def test_every_prometheus_query_selects_exposed_series_and_labels() -> None:
    """A renamed metric or label (syncd_runs_total{status}) breaks this, not the dashboard."""
    exposed = families()
    queries = targets("prometheus")
    assert len(queries) >= 10
    for title, expr in queries:
        names = re.findall(r"\b(syncd_\w+)(?:\{([^}]*)\})?", expr)
        assert names, title
        for name, matchers in names:
            assert name in exposed, f"{title}: {name} is not exposed"
            labels = exposed[name][1] | {"le"}
            for label in re.findall(r"(\w+)=~?\"", matchers):
                assert label in labels, f"{title}: {name} has no label {label}"
            assert grouping(expr) <= labels, f"{title}: grouped by a label {name} lacks"
        for value in re.findall(r'outcome=~"([^"]+)"', expr):
            outcomes = {"created", "updated", "unchanged", "deleted", "seen"}
            assert set(value.split("|")) <= outcomes, title


def test_every_log_query_selects_logged_events_and_fields() -> None:
    """Loki panels extract named fields only, of events the code logs with those fields."""
    logged = logged_fields()
    queries = targets("loki")
    assert len(queries) >= 3
    for title, expr in queries:
        for pipeline in pipelines(expr):
            assert pipeline.extracted is not None, f"{title}: bare | json"
            assert pipeline.events and pipeline.events <= set(logged), title
            known = set().union(*(logged[e] for e in pipeline.events))
            assert set(pipeline.extracted) <= known, title
            assert grouping(expr) <= set(pipeline.extracted), title


def test_every_panel_is_described_in_the_monitoring_doc() -> None:
    """Each panel has a description, and docs/MONITORING.md says what each one answers."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Grafana dashboard", 1)[1].split("\n## ", 1)[0]
    for panel in dashboard()["panels"]:
        assert panel["description"], panel["title"]
        assert f"**{panel['title']}**" in section, panel["title"]


def test_the_source_variable_filters_every_metric_panel() -> None:
    """Picking a source narrows every Prometheus query to it."""
    for title, expr in targets("prometheus"):
        for _, matchers in re.findall(r"\b(syncd_\w+)(?:\{([^}]*)\})?", expr):
            assert 'source=~"$source"' in matchers, title

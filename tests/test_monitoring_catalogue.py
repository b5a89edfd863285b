"""docs/MONITORING.md cannot drift: its event table is what the code emits, its queries name real
events and its rules real metrics."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from syncd.http import RequestStats
from syncd.log_events import (
    DOC,
    PACKAGE,
    UNDESCRIBED,
    Emission,
    descriptions,
    main,
    regenerate,
    scan,
    scan_source,
)
from syncd.ops.metrics import Metrics, StoreSnapshot
from syncd.ops.staleness import SourceHealth
from syncd.store import RunTotals
from syncd.sync import SyncResult
from tests.logql import Pipeline, QueryError, grouping, pipelines

REGENERATE = "run: .venv/bin/python -m syncd.log_events --write"
README = DOC.parent.parent / "deploy" / "README.md"
COMMON = {"event", "level", "timestamp", "source", "run_id"}
"""Fields of every line (event, level, timestamp) or of every line during a run (source, run_id)."""


def test_the_documented_table_is_the_one_the_code_implies() -> None:
    """Every event, level and field in the table matches the source (regenerate after changes)."""
    doc = DOC.read_text(encoding="utf-8")
    assert regenerate(doc, scan()) == doc, f"docs/MONITORING.md is out of date; {REGENERATE}"
    assert main(["--check"]) == 0


def test_every_event_in_the_table_is_described() -> None:
    """A placeholder left by --write is a sentence an operator still needs."""
    undescribed = [n for n, m in descriptions(DOC.read_text()).items() if m == UNDESCRIBED]
    assert undescribed == [], f"describe these events in docs/MONITORING.md: {undescribed}"


def test_the_scan_sees_direct_calls_helpers_and_both_levels() -> None:
    """Known events with their levels: direct calls, the token helper (with its IfExp), two levels."""
    events = {e.name: e for e in scan()}
    assert events["sync.finished"].levels == ("info", "error")
    assert "items_seen" in events["sync.finished"].fields
    assert events["token.failed"].levels == ("error",)
    assert {"token.issued", "token.refreshed", "token.reused", "token.invalidated"} <= set(events)
    assert events["source.stale"].levels == ("warning",)
    assert events["source.stale"].modules == ("syncd.ops.monitor",)


def test_scan_rules_on_a_small_module() -> None:
    """Literal dotted names count, dict splats are expanded, helpers resolve, prose does not."""
    source = textwrap.dedent(
        """
        def run(log, result):
            fields = {"kind": 1, **result.extra}
            log.info("sync.finished", status="ok", **fields)
            log.warning("Not an event name", x=1)
            log.info(name_in_a_variable)

        class Cache:
            def _event(self, source, event, *, level="info"):
                getattr(log, level)(f"token.{event}", source=source)

            def use(self, ok):
                self._event("s", "issued" if ok else "refreshed")
                self._event("s", "failed", level="error")
        """
    )
    assert sorted(scan_source(source, "m"), key=lambda e: e.name) == [
        Emission("sync.finished", "info", frozenset({"status", "kind", "**result.extra"}), "m"),
        Emission("token.failed", "error", frozenset({"source"}), "m"),
        Emission("token.issued", "info", frozenset({"source"}), "m"),
        Emission("token.refreshed", "info", frozenset({"source"}), "m"),
    ]


def test_regenerating_keeps_meanings_and_marks_new_events() -> None:
    """--write keeps what people wrote and gives a new event a visible placeholder."""
    doc = DOC.read_text(encoding="utf-8")
    events = scan()
    first = events[0]
    fresh = regenerate(doc.replace(f"`{first.name}`", "`renamed.event`"), events)
    assert descriptions(fresh)[first.name] == UNDESCRIBED
    assert descriptions(fresh)[events[1].name] == descriptions(doc)[events[1].name]


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of `language` in a Markdown text."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def logql_queries() -> dict[str, str]:
    """Every LogQL query and Loki rule of the doc, by its comment line or alert name."""
    found: dict[str, str] = {}
    comment = ""
    for line in blocks(doc(), "logql")[0].splitlines():
        if line.startswith("#"):
            comment = comment or line.lstrip("# ")
        elif line.strip():
            found[comment] = line
            comment = ""
    for rule in rules("syncd-logs"):
        found[rule["alert"]] = rule["expr"]
    return found


def rules(group: str) -> list[dict[str, Any]]:
    """The alert rules of the doc's rule group `group`."""
    for block in blocks(doc(), "yaml"):
        for candidate in yaml.safe_load(block)["groups"]:
            if candidate["name"] == group:
                return list(candidate["rules"])
    raise AssertionError(f"no rule group {group!r} in docs/MONITORING.md")


def only(name: str) -> Pipeline:
    """The one pipeline of the query or rule called `name`."""
    (pipeline,) = pipelines(logql_queries()[name])
    return pipeline


def latency_fields() -> set[str]:
    """What `**result.latency` stands for on sync.finished: the summary of a run with requests."""
    stats = RequestStats()
    stats.observe(0.1)
    return set(stats.latency_summary())


def logged_fields() -> dict[str, set[str]]:
    """event name -> every field a line of it can carry, splats expanded."""
    fields: dict[str, set[str]] = {}
    for event in scan():
        names = set(event.fields)
        if "**result.latency" in names:
            names = (names - {"**result.latency"}) | latency_fields()
        assert not [n for n in names if n.startswith("**")], f"{event.name}: unknown splat"
        fields[event.name] = names | COMMON
    return fields


def line(event: str, **fields: Any) -> dict[str, Any]:
    """A log line of `event` as the daemon writes it."""
    return {"event": event, "level": "info", "timestamp": "2026-01-31T12:00:00Z", **fields}


def finished(status: str = "succeeded", latencies: tuple[float, ...] = (0.1,)) -> dict[str, Any]:
    """A sync.finished line, its latency fields made by the real summary."""
    stats = RequestStats()
    for seconds in latencies:
        stats.observe(seconds)
    return line("sync.finished", source="shop", run_id=1, status=status, **stats.latency_summary())


def selects(pipeline: Pipeline, record: dict[str, Any]) -> bool:
    return pipeline.run(record)[0]


def skip_reasons() -> set[str]:
    """Every literal `reason=` a `sync.skipped` line is logged with, read from the source."""
    reasons: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "sync.skipped"
            ):
                reasons.update(
                    k.value.value
                    for k in node.keywords
                    if k.arg == "reason"
                    and isinstance(k.value, ast.Constant)
                    and isinstance(k.value.value, str)
                )
    return reasons


def test_every_skip_reason_is_described_and_the_reauth_one_exists() -> None:
    """The catalogue names each reason a skip can have; the re-auth alert's is a real one."""
    reasons = skip_reasons()
    assert {"already_running", "busy", "needs_reauth"} <= reasons
    meaning = descriptions(doc())["sync.skipped"]
    assert reasons <= set(re.findall(r"`([a-z_]+)`", meaning))
    wanted = {v for _, _, v in only("SyncdNeedsReauth").filters[0].comparisons}
    assert "needs_reauth" in wanted and "needs_reauth" in reasons


def test_the_reauth_alert_pages_for_needs_reauth_only() -> None:
    """A `busy` or `already_running` skip is another process or job at work: no critical page."""
    waiting = [
        line("source.needs_reauth", source="shop", run_id=1, detail="revoked"),
        line("sync.skipped", source="shop", reason="needs_reauth", level="warning"),
    ]
    not_waiting = [
        line("sync.skipped", source="shop", reason="busy", detail="by vm:1:x", level="warning"),
        line("sync.skipped", source="shop", reason="already_running", kind="full"),
        line("sync.full_required", source="shop", reason="no watermark yet"),
        line("http.retry_scheduled", source="shop", reason="HTTP 503", level="warning"),
    ]
    for name in (
        "SyncdNeedsReauth",
        "Waiting for `syncd auth` (the skip repeats every scheduled slot; `busy` and `already_running`",
    ):
        pipeline = only(name)
        assert [selects(pipeline, r) for r in waiting] == [True, True], name
        assert [selects(pipeline, r) for r in not_waiting] == [False] * 4, name


def test_the_slow_response_queries_survive_runs_that_sent_no_request() -> None:
    """No requests, no p95_ms: the guard drops the line instead of failing the whole query."""
    for name in (
        "SyncdSlowResponses",
        "p95 response time of runs, milliseconds. A run that sent no request has no p95_ms: without the",
    ):
        pipeline = only(name)
        assert pipeline.run(finished(latencies=())) == (False, None), name
        assert pipeline.run(finished(latencies=(6.0,) * 20)) == (True, 6000.0), name
        assert pipeline.run(line("sync.started", source="shop", kind="full"))[0] is False
        # The model fails like Loki once both guards are gone (as the doc had it before).
        bare = pipeline.text.replace(' and p95_ms!=""', "").replace(' | __error__=""', "")
        unguarded = pipelines("{}" + bare + "[1m]")[0]
        with pytest.raises(QueryError, match="SampleExtractionErr"):
            unguarded.run(finished(latencies=()))


def test_failed_run_queries_count_failed_runs_and_not_cancelled_ones() -> None:
    """LogQL and jq agree: `failed` counts, `cancelled` (a stop) and `succeeded` do not."""
    records = [finished("failed"), finished("cancelled"), finished("succeeded")]
    for name in (
        "SyncdRunFailed",
        "Failed runs per source, last 30 minutes (not `cancelled`: a stop interrupted those)",
    ):
        assert [selects(only(name), r) for r in records] == [True, False, False], name
    (program,) = [p for p in jq_programs() if "sync.finished" in p and ".status" in p]
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed: the LogQL half ran")
    output = run_jq(program, records)
    assert [o["status"] for o in output] == ["failed"]


def test_every_field_a_logql_query_uses_is_extracted_and_logged() -> None:
    """Each pipeline names its fields (no bare `| json`: every field would become a Loki label),
    filters and groups only on those, and each is logged by an event the query selects."""
    logged = logged_fields()
    for name, expr in logql_queries().items():
        for pipeline in pipelines(expr):
            assert pipeline.has_json and pipeline.extracted is not None, f"{name}: bare | json"
            extracted = set(pipeline.extracted)
            assert pipeline.fields - {"__error__"} <= extracted, name
            assert grouping(expr) <= extracted, name
            assert pipeline.events and pipeline.events <= set(logged), name
            known = set().union(*(logged[e] for e in pipeline.events))
            assert extracted <= known, f"{name}: {sorted(extracted - known)} never logged"


def jq_programs() -> list[str]:
    """Every jq program quoted in the doc and in deploy/README.md (skipping the `...` example)."""
    texts = doc() + README.read_text(encoding="utf-8")
    found = re.findall(r"jq -c?R '(.*?)'", texts, flags=re.DOTALL)
    return [p for p in found if "..." not in p]


def jq_fields(program: str) -> tuple[set[str], set[str]]:
    """(events the program compares .event with, fields it reads) of a jq program."""
    events = set(re.findall(r'\.event == "([^"]+)"', program))
    code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', program)
    fields = set(re.findall(r"\.([a-z_][a-z0-9_]*)", code))
    for construction in re.findall(r"\{([^{}]*)\}", code):
        fields.update(n.strip() for n in construction.split(",") if re.fullmatch(r"\s*\w+\s*", n))
    return events, fields


def run_jq(program: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run a documented jq program over log lines (and one line that is not JSON)."""
    lines = "\n".join(["Traceback (most recent call last):", *map(json.dumps, records)])
    jq = shutil.which("jq")
    assert jq is not None
    done = subprocess.run(  # noqa: S603 - a query from our own docs, on fixed sample lines
        [jq, "-cR", program], input=lines, capture_output=True, text=True, check=True
    )
    return [json.loads(out) for out in done.stdout.splitlines()]


def test_every_field_a_jq_query_reads_is_logged_by_the_events_it_selects() -> None:
    """A renamed field (p95_ms, items_seen, ...) breaks this before it silently empties a query."""
    logged = logged_fields()
    programs = jq_programs()
    assert len(programs) >= 7
    for program in programs:
        events, fields = jq_fields(program)
        assert events <= set(logged), program
        known = set().union(*(logged[e] for e in events)) if events else COMMON
        assert fields <= known, f"{program}: {sorted(fields - known)} never logged"


def test_the_jq_queries_select_what_they_say() -> None:
    """Run on sample lines: re-auth waits but no busy skip; slow runs, a run without requests."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    programs = jq_programs()
    (reauth,) = [p for p in programs if "needs_reauth" in p]
    records = [
        line("token.failed", source="shop", detail="invalid_client"),
        line("source.needs_reauth", source="shop"),
        line("sync.skipped", source="shop", reason="needs_reauth"),
        line("sync.skipped", source="shop", reason="busy"),
    ]
    assert [r.get("reason") for r in run_jq(reauth, records)] == [None, None, "needs_reauth"]
    (slow,) = [p for p in programs if "p95_ms" in p]
    output = run_jq(slow, [finished(latencies=()), finished(latencies=(3.0,) * 20)])
    assert [o["p95_ms"] for o in output] == [3000.0]


def populated() -> Metrics:
    """Metrics with every family holding at least one series."""
    metrics = Metrics()
    metrics.declare(["s"])
    metrics.observe(
        SyncResult(1, "s", "full", "succeeded", RunTotals(requests=1), 1.0, latencies=(0.1,))
    )
    health = SourceHealth("s", datetime(2026, 1, 1, tzinfo=UTC), 60.0, 1.0, False, False, None)
    metrics.update(StoreSnapshot((health,), {("s", "issued"): 1}, {"s": 3}, {("hook", "s"): 2}))
    return metrics


def families() -> dict[str, tuple[str, set[str], dict[str, set[str]]]]:
    """Exposed sample name -> (family type, label names, label values)."""
    found: dict[str, tuple[str, set[str], dict[str, set[str]]]] = {}
    for family in text_string_to_metric_families(populated().render().decode()):
        for sample in family.samples:
            # A histogram is named by its family too (its samples are _bucket, _count, _sum).
            for name in {sample.name, family.name}:
                _, names, values = found.setdefault(name, (family.type, set(), {}))
                names.update(sample.labels)
                for label, value in sample.labels.items():
                    values.setdefault(label, set()).add(value)
    return found


def test_metric_names_in_the_doc_are_exactly_the_exposed_ones() -> None:
    """Exact names, not substrings: syncd_source_stale must not pass as part of _limit_seconds."""
    exposed = families()
    mentioned = set(re.findall(r"\bsyncd_[a-z_]+\b", doc()))
    assert mentioned and mentioned - set(exposed) == set()


def test_the_metrics_table_gives_each_metric_its_type_and_labels() -> None:
    """Each row of the metrics table: an exposed family of that type with exactly those labels."""
    exposed = families()
    section = doc().split("### Metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(syncd_\w+)` \| (\w+) \| ([^|]*) \|", section, flags=re.MULTILINE)
    assert len(rows) >= 15
    for name, kind, labels in rows:
        sample = f"{name}_count" if kind == "histogram" else name
        assert sample in exposed, name
        family_type, names, _ = exposed[sample]
        assert family_type == kind, name
        documented = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", labels)))
        assert documented == names, f"{name}: documented {documented}, exposed {names}"


def test_prometheus_rules_select_labels_and_values_that_exist() -> None:
    """`syncd_runs_total{status="failed"}`: the label exists and takes that value."""
    exposed = families()
    selectors = [
        (name, matchers)
        for rule in rules("syncd-metrics")
        for name, matchers in re.findall(r"\b(syncd_\w+)(?:\{([^}]*)\})?", rule["expr"])
    ]
    assert len(selectors) >= 6
    for name, matchers in selectors:
        assert name in exposed, name
        values = exposed[name][2]
        for label, value in re.findall(r'(\w+)="([^"]*)"', matchers):
            assert value in values.get(label, set()), f"{name}{{{label}={value!r}}}"
    for rule in rules("syncd-metrics"):
        for name in re.findall(r"\b(syncd_\w+)", rule["expr"]):
            assert grouping(rule["expr"]) <= exposed[name][1] | {"le"}, rule["alert"]

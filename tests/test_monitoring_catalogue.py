"""docs/MONITORING.md cannot drift: its event table is what the code emits, its queries name real
events and its rules real metrics."""

from __future__ import annotations

import re
import textwrap

from syncd.catalogue import (
    DOC,
    UNDESCRIBED,
    Emission,
    descriptions,
    main,
    regenerate,
    scan,
    scan_source,
)
from syncd.ops.metrics import Metrics
from syncd.store import RunTotals
from syncd.sync import SyncResult

REGENERATE = "run: .venv/bin/python -m syncd.catalogue --write"


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


def test_queries_and_rules_name_only_real_events_and_metrics() -> None:
    """A renamed event or metric breaks this test before it silently breaks an alert."""
    doc = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r'event\s*==?\s*"([a-z_]+\.[a-z_.]+)"', doc))
    named |= {n for alt in re.findall(r'event=~"([^"]+)"', doc) for n in alt.split("|")}
    assert named and named <= {e.name for e in scan()}
    metrics = Metrics()
    metrics.observe(
        SyncResult(1, "s", "full", "succeeded", RunTotals(requests=1), 1.0, latencies=(0.1,))
    )
    exposed = metrics.render().decode()
    mentioned = set(re.findall(r"\bsyncd_[a-z_]+", doc))
    assert mentioned and {m for m in mentioned if m not in exposed} == set()

"""Prometheus metrics of one daemon, on its own `CollectorRegistry` (never the global default one).

Two kinds of numbers: what this process did (runs, items, requests, latencies), counted as each run
ends; and what the database knows (token events, last success, staleness, re-auth, product counts),
read into a snapshot just before each scrape. Labels are source names and fixed words only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from syncd import __version__
from syncd.ops.staleness import SourceHealth
from syncd.store.base import TOKEN_EVENT_KINDS, RunKind, RunStatus
from syncd.sync import SyncResult

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text exposition format every Prometheus version scrapes."""

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RUN_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
RUN_KINDS: tuple[str, ...] = get_args(RunKind)
RUN_OUTCOMES = tuple(s for s in get_args(RunStatus) if s != "running")
"""The statuses a finished run can have: each (source, kind, status) series exists from the start."""
TOKEN_EVENTS = TOKEN_EVENT_KINDS
"""The events the token cache records (tests check this against the code)."""


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """What the database said at the last refresh."""

    health: tuple[SourceHealth, ...] = ()
    token_events: Mapping[tuple[str, str], int] = field(default_factory=dict)
    products: Mapping[str, int] = field(default_factory=dict)
    webhook_backlog: Mapping[tuple[str, str], int] = field(default_factory=dict)


class _SnapshotCollector(Collector):
    """Yields the families of the latest `StoreSnapshot` at collection time."""

    def __init__(self) -> None:
        self.snapshot = StoreSnapshot()
        self.sources: tuple[str, ...] = ()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        tokens = CounterMetricFamily(
            "syncd_token_events",
            "Token events recorded in the database (issued, refreshed, reused, invalidated, failed).",
            labels=["source", "event"],
        )
        # A zero before the first event: increase() cannot see a series that starts at 1.
        counts: dict[tuple[str, str], int] = {
            (source, event): 0 for source in self.sources for event in TOKEN_EVENTS
        }
        counts.update(snap.token_events)
        for (source, event), count in sorted(counts.items()):
            tokens.add_metric([source, event], count)
        last = GaugeMetricFamily(
            "syncd_last_success_timestamp_seconds",
            "Unix time at which the last successful run of the source finished.",
            labels=["source"],
        )
        stale = GaugeMetricFamily(
            "syncd_source_stale", "1 if the source is past its staleness limit.", labels=["source"]
        )
        limit = GaugeMetricFamily(
            "syncd_source_stale_limit_seconds",
            "Age of the last success at which the source counts as stale.",
            labels=["source"],
        )
        reauth = GaugeMetricFamily(
            "syncd_source_needs_reauth",
            "1 if the source waits for an operator to run 'syncd auth'.",
            labels=["source"],
        )
        for h in snap.health:
            if h.last_success_at is not None:
                last.add_metric([h.source], h.last_success_at.timestamp())
            stale.add_metric([h.source], 1.0 if h.stale else 0.0)
            limit.add_metric([h.source], h.limit_s)
            reauth.add_metric([h.source], 1.0 if h.needs_reauth else 0.0)
        products = GaugeMetricFamily(
            "syncd_products", "Live (not tombstoned) products stored.", labels=["source"]
        )
        for source, count in sorted(snap.products.items()):
            products.add_metric([source], count)
        backlog = GaugeMetricFamily(
            "syncd_webhook_backlog",
            "Change-feed entries a webhook has not delivered yet.",
            labels=["webhook", "source"],
        )
        for (hook, source), count in sorted(snap.webhook_backlog.items()):
            backlog.add_metric([hook, source], count)
        yield from (tokens, last, stale, limit, reauth, products, backlog)


class Metrics:
    """The daemon's metrics: feed it finished runs and store snapshots, scrape it with `render()`."""

    def __init__(self) -> None:
        # Without this every counter and histogram also exports a `_created` series: twice the
        # series for nothing syncd's alerts use. The switch is the library's, process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter(
            "syncd_runs", "Finished runs.", ["source", "kind", "status"], registry=r
        )
        self.items = Counter(
            "syncd_items",
            "Products handled by finished runs, by outcome.",
            ["source", "outcome"],
            registry=r,
        )
        self.pages = Counter("syncd_pages", "Pages committed.", ["source"], registry=r)
        self.requests = Counter("syncd_requests", "HTTP requests sent.", ["source"], registry=r)
        self.retries = Counter(
            "syncd_retries", "HTTP requests retried (5xx, timeouts, 429).", ["source"], registry=r
        )
        self.rate_limited = Counter(
            "syncd_rate_limited", "HTTP 429 answers received.", ["source"], registry=r
        )
        self.latency = Histogram(
            "syncd_request_duration_seconds",
            "Response time of each HTTP request, observed when its run ends.",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.run_duration = Histogram(
            "syncd_run_duration_seconds",
            "Duration of finished runs.",
            ["source", "kind"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.info = Gauge("syncd_build_info", "Always 1.", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        self._snapshot = _SnapshotCollector()
        r.register(self._snapshot)

    def declare(self, sources: Iterable[str]) -> None:
        """Export zeroes for every source from the start, so rates and alerts see no gaps:
        `increase()` misses the first failure of a series that appears already at 1."""
        names = tuple(sources)
        for source in names:
            for counter in (self.pages, self.requests, self.retries, self.rate_limited):
                counter.labels(source)
            for outcome in ("created", "updated", "unchanged", "deleted"):
                self.items.labels(source, outcome)
            for kind in RUN_KINDS:
                for status in RUN_OUTCOMES:
                    self.runs.labels(source, kind, status)
        self._snapshot.sources = names

    def observe(self, result: SyncResult) -> None:
        """Count one finished run."""
        s, t = result.source, result.totals
        self.runs.labels(s, result.kind, result.status).inc()
        for outcome, count in (
            ("created", t.items_created),
            ("updated", t.items_updated),
            ("unchanged", t.items_unchanged),
            ("deleted", t.items_deleted),
        ):
            self.items.labels(s, outcome).inc(count)
        self.pages.labels(s).inc(t.pages)
        self.requests.labels(s).inc(t.requests)
        self.retries.labels(s).inc(t.retries)
        self.rate_limited.labels(s).inc(t.rate_limited)
        self.run_duration.labels(s, result.kind).observe(result.duration)
        histogram = self.latency.labels(s)
        for seconds in result.latencies:
            histogram.observe(seconds)

    def update(self, snapshot: StoreSnapshot) -> None:
        """Replace what the database said (read by the caller: this class does no I/O)."""
        self._snapshot.snapshot = snapshot

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)

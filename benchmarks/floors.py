"""The issue's floors, checked against the JSON the harness wrote (never against typed-in figures)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from benchmarks.plan import RATE_VARIANTS, UNTOLD, UNTOLD_NEXT

Record = dict[str, Any]

RSS_LIMIT_MB = 150.0
# "About the same at 1M": at most this much above the 100k figure.
RSS_GROWTH = 1.2


@dataclass(frozen=True, slots=True)
class Check:
    """One floor on one case: what was measured, what was required, and whether it held."""

    floor: str
    case: str
    measured: str
    required: str
    ok: bool | None  # None: not measured, or not applicable, in these results
    cause: str | None = None  # which explanation applies when it is missed (prose.ANALYSIS)


def _runs(
    record: Record,
    tool: str,
    kind: str,
    variant: str | None = None,
    concurrency: int | None = None,
) -> list[Record]:
    """The runs of one client in a case (every repeat), optionally of one variant."""
    return [
        r
        for r in record["runs"]
        if r["tool"] == tool
        and r["kind"] == kind
        and (variant is None or r.get("variant", "") == variant)
        and (concurrency is None or r["concurrency"] == concurrency)
    ]


def _run(record: Record, tool: str, kind: str, variant: str | None = None) -> Record | None:
    """The median run (by products/s) of one client in a case."""
    runs = sorted(_runs(record, tool, kind, variant), key=lambda r: r["products_per_s"] or 0)
    return runs[len(runs) // 2] if runs else None


def median(values: list[float]) -> float:
    """The median (the mean of the middle two for an even count)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def spread(values: list[float], fmt: str = "{:.1%}") -> str:
    """`median (min to max, n runs)`, or the one value."""
    if len(values) == 1:
        return fmt.format(values[0]) + " (1 run)"
    return (
        f"median {fmt.format(median(values))} "
        f"(range {fmt.format(min(values))} to {fmt.format(max(values))}, {len(values)} runs)"
    )


def _cases(records: list[Record]) -> list[Record]:
    return [r for r in records if r.get("kind") == "case"]


# How the floors name the variants of a rate case.
_VARIANTS = {
    UNTOLD: "untold, first sync",
    UNTOLD_NEXT: "untold, next sync",
}


def rate_limited(records: list[Record]) -> list[Check]:
    """>= 90% of the allowed request rate over the run, < 1% of answers 429 (syncd full runs),
    told the store's limit (`rate_limit` set) and not told (the adaptive rate finds it: on a
    store's first sync, and on the next one, which resumes the search the first saved)."""
    out = []
    for record in _cases(records):
        if record["profile"]["rate"] is None:
            continue
        for variant in (*RATE_VARIANTS, ""):
            runs = _runs(record, "syncd", "full", variant)
            if not runs:
                continue
            floor = "rate limit" + (f" ({_VARIANTS.get(variant, variant)})" if variant else "")
            floor += ": >= 90% of allowed rate, < 1% 429"
            burst = record["profile"]["burst"] or 1
            if all(r["served_requests"] <= burst for r in runs):
                # The store's bucket never had to refill: nothing was rate-limited to measure.
                out.append(
                    Check(
                        floor,
                        record["case"],
                        f"n/a: all {runs[0]['served_requests']} requests fit the store's burst "
                        f"of {burst}, so the limit never applied",
                        ">= 90%, < 1%",
                        None,
                    )
                )
                continue
            shares = [r["allowed_share"] for r in runs]
            bad = [r["share_429"] for r in runs]
            refused = sum(r["served_429"] for r in runs)
            out.append(
                Check(
                    floor,
                    record["case"],
                    f"{spread(shares)} of allowed; 429s {spread(bad, '{:.2%}')}",
                    ">= 90%, < 1% (medians)",
                    median(shares) >= 0.9 and median(bad) < 0.01,
                    "rate limit, 429s" if refused else "rate limit, CPU",
                )
            )
    return out


def call_window(records: list[Record]) -> list[Check]:
    """AmeriCommerce: >= 90% of the calls each window leaves free, no 429 of syncd's own; a sync
    smaller than the window's share is done inside one window."""
    out = []
    for record in _cases(records):
        profile = record["profile"]
        if profile.get("share") is None:
            continue
        runs = _runs(record, "syncd", "full")
        if runs:
            shares = [r["allowed_share"] for r in runs]
            refused = [r["served_429"] for r in runs]
            out.append(
                Check(
                    "call window: >= 90% of the free calls, 0 429s",
                    record["case"],
                    f"{spread(shares)} of the {profile['share']} free calls per window; "
                    f"429s: {sum(refused)} in {len(runs)} runs",
                    ">= 90% (median), 0",
                    median(shares) >= 0.9 and sum(refused) == 0,
                    "call window",
                )
            )
        small = record.get("small")
        if small is not None:
            out.append(
                Check(
                    "call window: a sync within the share waits for no window",
                    record["case"],
                    f"{small['served_requests']} requests in {small['wall_s']:.2f} s "
                    f"(window {small['window_s']:g} s), {small['served_429']} 429s",
                    f"< {small['window_s']:g} s, 0 429s",
                    small["wall_s"] < small["window_s"] and small["served_429"] == 0,
                    "call window",
                )
            )
    return out


def latency(records: list[Record]) -> list[Check]:
    """50 ms per response, concurrency 8: >= 6x the baseline's products/s."""
    out = []
    for record in _cases(records):
        if not record["profile"]["latency_s"] or record["profile"]["rate"] is not None:
            continue
        full = _runs(record, "syncd", "full")
        base = _runs(record, "baseline", "full", concurrency=1)
        pooled = [r for r in _runs(record, "baseline", "full") if r["concurrency"] > 1]
        if not full or not base:
            continue
        syncd_rate = median([r["products_per_s"] for r in full])
        base_rate = median([r["products_per_s"] for r in base]) or 1.0
        ratio = syncd_rate / base_rate
        vs_pooled = ""
        if pooled:
            pooled_rate = median([r["products_per_s"] for r in pooled]) or 1.0
            vs_pooled = (
                f"; {syncd_rate / pooled_rate:.1f}x the pooled baseline at c="
                f"{pooled[0]['concurrency']} ({pooled_rate:,.0f}/s)"
            )
        out.append(
            Check(
                f"latency: >= 6x baseline at concurrency {full[0]['concurrency']}",
                record["case"],
                f"{ratio:.1f}x (medians {syncd_rate:,.0f} vs {base_rate:,.0f}/s, "
                f"{len(full)} and {len(base)} runs{vs_pooled})",
                ">= 6x",
                ratio >= 6,
            )
        )
    return out


def throughput(records: list[Record]) -> list[Check]:
    """No limit, no latency, 100k: >= 10,000 products/s end to end on one core."""
    out = []
    for record in _cases(records):
        profile = record["profile"]
        limited = profile["rate"] is not None or profile.get("call_limit") is not None
        if limited or profile["latency_s"] or record["products"] != 100_000:
            continue  # an AmeriCommerce plan bounds it by its call window, not by syncd's CPU
        runs = _runs(record, "syncd", "full")
        if not runs:
            continue
        rates = [r["products_per_s"] for r in runs]
        cpu = median([r["cpu_s_per_10k"] for r in runs])
        out.append(
            Check(
                "throughput: >= 10,000 products/s on one core",
                record["case"],
                f"{spread(rates, '{:,.0f}')} products/s ({cpu:.2f} CPU s per 10k)",
                ">= 10,000/s (median)",
                median(rates) >= 10_000,
            )
        )
    return out


def incremental(records: list[Record]) -> list[Check]:
    """After a 1% change on 100k: requests <= ceil(changed / page) + 2, >= 20x faster than full."""
    out = []
    for record in _cases(records):
        if record["products"] != 100_000 or record["profile"]["name"] != "nolimit":
            continue
        full, inc = _run(record, "syncd", "full"), _run(record, "syncd", "incremental")
        if full is None or inc is None:
            continue
        budget = math.ceil(record["changed"] / record["page_size"]) + 2
        speedup = full["wall_s"] / inc["wall_s"] if inc["wall_s"] else math.inf
        out.append(
            Check(
                "incremental: requests <= ceil(changed/page)+2, >= 20x faster",
                record["case"],
                f"{inc['served_requests']} requests for {record['changed']} changed; "
                f"{speedup:.0f}x faster ({inc['wall_s']:.2f} s vs {full['wall_s']:.2f} s)",
                f"<= {budget} requests, >= 20x",
                inc["served_requests"] <= budget and speedup >= 20,
            )
        )
    return out


def memory(records: list[Record]) -> list[Check]:
    """Peak RSS <= 150 MB at 100k, and about the same at 1M."""
    out = []
    peak = {}
    for record in _cases(records):
        syncd = [r for r in record["runs"] if r["tool"] == "syncd"]
        if record["products"] in (100_000, 1_000_000) and syncd:
            worst = max(syncd, key=lambda r: r["peak_rss_mb"])
            peak[record["case"]] = (record["products"], worst["peak_rss_mb"])
    at_100k = [mb for n, mb in peak.values() if n == 100_000]
    for case, (n, mb) in sorted(peak.items()):
        if n == 100_000:
            out.append(Check("memory: peak RSS <= 150 MB", case, f"{mb:.0f} MB", "<= 150 MB",
                             mb <= RSS_LIMIT_MB))  # fmt: skip
        else:
            ref = max(at_100k, default=RSS_LIMIT_MB)
            out.append(
                Check(
                    "memory: about the same at 1M",
                    case,
                    f"{mb:.0f} MB (100k: {ref:.0f} MB)",
                    f"<= 150 MB and <= {RSS_GROWTH:.1f}x the 100k figure",
                    mb <= RSS_LIMIT_MB and mb <= ref * RSS_GROWTH,
                )
            )
    if not any(n == 1_000_000 for n, _ in peak.values()):
        out.append(Check("memory: about the same at 1M", "nolimit-1m", "not run (opt-in:"
                         " --include-1m)", "<= 150 MB", None))  # fmt: skip
    return out


def tokens(records: list[Record]) -> list[Check]:
    """One token request per lifetime across all workers: each cold full run (a fresh database)
    asks once; the incremental run after it, and the next untold full sync (on the first one's
    database), reuse the persisted token. (AmeriCommerce runs use an admin-console token:
    nothing to count.)"""
    out = []
    for record in records:
        if record["profile"].get("platform", "adobe") != "adobe":
            continue
        syncd = [r for r in record["runs"] if r["tool"] == "syncd"]
        if not syncd:
            continue
        # A run on a warm database finds the token the cold one persisted.
        warm = [r["kind"] == "incremental" or r.get("variant") == UNTOLD_NEXT for r in syncd]
        full = [r["token_requests"] for r, w in zip(syncd, warm, strict=True) if not w]
        inc = [r["token_requests"] for r, w in zip(syncd, warm, strict=True) if w]
        ok = all(c == 1 for c in full) and all(c == 0 for c in inc)
        shown = f"{len(full)} cold full runs: {min(full)} to {max(full)} each"
        if inc:
            shown += f"; {len(inc)} runs on a warm database: {min(inc)} to {max(inc)} each"
        out.append(Check("tokens: exactly one per lifetime", record["case"], shown,
                         "1 per cold start, 0 after", ok))  # fmt: skip
    return out


def fleet(records: list[Record]) -> list[Check]:
    """Many stores in one process: RSS under 2 MB per idle source, p95 start delay under 1 s."""
    out = []
    for record in records:
        if record.get("kind") != "fleet":
            continue
        f = record["figures"]
        per_source = f.get("rss_per_idle_source_mb")
        when = "idle"
        if per_source is None and f.get("rss_per_source_end_mb") is not None:
            # No moment without a run going: the RSS at the end is an upper bound.
            per_source, when = f["rss_per_source_end_mb"], "at the end, a run always going"
        out.append(
            Check(
                "many stores: RSS < 2 MB per idle source",
                record["case"],
                "n/a: no RSS sampled"
                if per_source is None
                else f"{per_source:.2f} MB per source ({when}; "
                f"{f['rss_start_mb']:.0f} MB before the sources; "
                f"{f['rss_per_source_scheduled_mb']:.3f} MB each once built and scheduled)",
                "< 2 MB",
                None if per_source is None else per_source < 2.0,
            )
        )
        p95 = f.get("start_delay_p95_s")
        out.append(
            Check(
                "many stores: p95 start delay < 1 s",
                record["case"],
                "n/a: no run was measured"
                if p95 is None
                else f"p95 {p95:.3f} s (p50 {f['start_delay_p50_s']:.3f} s, max "
                f"{f['start_delay_max_s']:.3f} s) after the first runs; first runs p95 "
                f"{f.get('first_start_delay_p95_s') or 0:.3f} s; {f['runs']} runs; event-loop lag p95 "
                f"{f['loop_lag_p95_ms']} ms, max {f['loop_lag_max_ms']} ms; "
                f"{f['cpu_s_per_run']} CPU s per run",
                "< 1 s",
                None if p95 is None else p95 < 1.0,
            )
        )
    return out


# The CPU floor: products per CPU second against the client of this commit.
CPU_BEFORE = "77c716d"
CPU_FLOOR = 1.5


def cpu(ab: list[Record]) -> list[Check]:
    """Products per CPU second of the client, this commit against CPU_BEFORE, from `benchmarks
    cpu-ab` (alternated pairs): both summaries must reach the floor, the median of the pair
    ratios and the ratio of each side's median."""
    out = []
    for record in ab:
        if not str(record["before"]["commit"]).startswith(CPU_BEFORE[:7]):
            continue
        pairs = record["pairs"]
        both = (record["median_pair_ratio"], record["ratio_of_medians"])
        least = min(both)
        out.append(
            Check(
                f"CPU: >= {CPU_FLOOR}x products per CPU second against {CPU_BEFORE}",
                record["case"],
                f"median of {len(pairs)} pair ratios {both[0]:.2f}x (range "
                f"{min(p['ratio'] for p in pairs):.2f}-{max(p['ratio'] for p in pairs):.2f}); "
                f"medians of each side {record['median_before']:,.0f} -> "
                f"{record['median_after']:,.0f} products per CPU s: {both[1]:.2f}x",
                f">= {CPU_FLOOR}x (both summaries)",
                least >= CPU_FLOOR,
            )
        )
    return out


def all_checks(records: list[Record], ab: list[Record] | None = None) -> list[Check]:
    """Every floor, in the issue's order (`ab`: `benchmarks cpu-ab` records)."""
    return [
        *rate_limited(records),
        *call_window(records),
        *latency(records),
        *throughput(records),
        *incremental(records),
        *memory(records),
        *tokens(records),
        *fleet(records),
        *cpu(ab or []),
    ]

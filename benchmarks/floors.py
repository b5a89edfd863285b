"""The issue's floors, checked against the JSON the harness wrote (never against typed-in figures)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


def _run(record: Record, tool: str, kind: str) -> Record | None:
    return next((r for r in record["runs"] if r["tool"] == tool and r["kind"] == kind), None)


def _cases(records: list[Record]) -> list[Record]:
    return [r for r in records if r.get("kind") == "case"]


def rate_limited(records: list[Record]) -> list[Check]:
    """>= 90% of the allowed request rate over the run, < 1% of answers 429 (syncd full runs)."""
    out = []
    for record in _cases(records):
        full = _run(record, "syncd", "full")
        if record["profile"]["rate"] is None or full is None:
            continue
        share, bad = full["allowed_share"], full["share_429"]
        burst = record["profile"]["burst"] or 1
        if full["served_requests"] <= burst:
            # The store's bucket never had to refill: nothing was rate-limited to measure.
            out.append(
                Check(
                    "rate limit: >= 90% of allowed rate, < 1% 429",
                    record["case"],
                    f"n/a: all {full['served_requests']} requests fit the store's burst of "
                    f"{burst}, so the limit never applied ({share:.1%} of allowed, "
                    f"{full['products_per_s']:,.0f} products/s)",
                    ">= 90%, < 1%",
                    None,
                )
            )
            continue
        out.append(
            Check(
                "rate limit: >= 90% of allowed rate, < 1% 429",
                record["case"],
                f"{share:.1%} of allowed, {bad:.2%} 429 ({full['served_429']} of "
                f"{full['served_requests']})",
                ">= 90%, < 1%",
                share >= 0.9 and bad < 0.01,
                "rate limit, 429s" if full["served_429"] else "rate limit, CPU",
            )
        )
    return out


def latency(records: list[Record]) -> list[Check]:
    """50 ms per response, concurrency 8: >= 6x the baseline's products/s."""
    out = []
    for record in _cases(records):
        if not record["profile"]["latency_s"] or record["profile"]["rate"] is not None:
            continue
        full, base = _run(record, "syncd", "full"), _run(record, "baseline", "full")
        if full is None or base is None or not base["products_per_s"]:
            continue
        ratio = full["products_per_s"] / base["products_per_s"]
        out.append(
            Check(
                f"latency: >= 6x baseline at concurrency {full['concurrency']}",
                record["case"],
                f"{ratio:.1f}x ({full['products_per_s']:,.0f} vs {base['products_per_s']:,.0f}/s)",
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
        if profile["rate"] is not None or profile["latency_s"] or record["products"] != 100_000:
            continue
        full = _run(record, "syncd", "full")
        if full is None:
            continue
        out.append(
            Check(
                "throughput: >= 10,000 products/s on one core",
                record["case"],
                f"{full['products_per_s']:,.0f} products/s "
                f"({full['cpu_s_per_10k']:.2f} CPU s per 10k)",
                ">= 10,000/s",
                full["products_per_s"] >= 10_000,
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
    """One token request per lifetime across all workers: a cold full run asks once, the
    incremental run after it reuses the persisted token."""
    out = []
    for record in records:
        syncd = [r for r in record["runs"] if r["tool"] == "syncd"]
        if not syncd:
            continue
        if record.get("kind") == "sweep":
            counts = [r["token_requests"] for r in syncd]
            ok = all(c == 1 for c in counts)
            shown = f"{len(counts)} cold runs at concurrency " + ", ".join(
                str(c) for c in sorted({r["concurrency"] for r in syncd})
            )
            shown += f": {min(counts)} to {max(counts)} each"
        else:
            counts = [r["token_requests"] for r in syncd]
            ok = sum(counts) == 1 and counts[0] == 1
            shown = " + ".join(f"{r['kind']} {r['token_requests']}" for r in syncd)
        out.append(Check("tokens: exactly one per lifetime", record["case"], shown,
                         "1 per cold start, 0 after", ok))  # fmt: skip
    return out


def all_checks(records: list[Record]) -> list[Check]:
    """Every floor, in the issue's order."""
    return [
        *rate_limited(records),
        *latency(records),
        *throughput(records),
        *incremental(records),
        *memory(records),
        *tokens(records),
    ]

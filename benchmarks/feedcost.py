"""What the change feed costs a full sync: the same full sync of the no-limit catalog with the
feed on and off (`[changes] enabled`), alternating, each in a fresh process and database.

    python -m benchmarks run --profiles '' --sweep '' --no-stages --feed-cost 5 --sizes 100000

writes `results/feedcost-nolimit-<size>.json` (the runs: `Runner._feed_cost`);
`python -m benchmarks report` adds this module's section.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

GOAL = 0.15
"""The feed may cost at most this share of full-sync throughput."""


def feed_cost_section(results: Path) -> list[str]:
    """The report's section, from every feedcost file in `results` (none: no section)."""
    lines: list[str] = []
    for path in sorted(results.glob("feedcost-*.json")):
        record = json.loads(path.read_text())
        runs = [r for r in record["runs"] if r["status"] == "succeeded"]
        on = [r["products_per_s"] for r in runs if r["feed"]]
        off = [r["products_per_s"] for r in runs if not r["feed"]]
        if not on or not off:
            continue
        med_on, med_off = statistics.median(on), statistics.median(off)
        cost = 1 - med_on / med_off
        verdict = "**met**" if cost <= GOAL else "**NOT MET**"
        if not lines:
            lines += ["## What the change feed costs", ""]
        lines += [
            f"Full syncs of {record['products']:,} products (no limit, concurrency "
            f"{record['concurrency']}, page size {record['page_size']}), each in a fresh process "
            f"and database, alternating feed on and off ({len(on)} + {len(off)} runs; "
            f"`{record['command']}`, commit `{record['machine']['commit']}`).",
            "",
            "| change feed | median products/s | runs (products/s) |",
            "|---|---:|---|",
            f"| on | {med_on:,.0f} | {', '.join(f'{v:,.0f}' for v in on)} |",
            f"| off | {med_off:,.0f} | {', '.join(f'{v:,.0f}' for v in off)} |",
            "",
            f"The feed costs **{cost:.1%}** of full-sync throughput (goal: at most "
            f"{GOAL:.0%}: {verdict}). A full sync into an empty table appends one entry per "
            "product (its `created`), with its payload, in the page's transaction: one more "
            "executemany and one counter row per page.",
            "",
        ]
    return lines

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
        rates: dict[str, list[float]] = {}
        for run in record["runs"]:
            if run["status"] == "succeeded":
                rates.setdefault(str(run["feed"]), []).append(run["products_per_s"])
        if "on" not in rates or "off" not in rates:
            continue
        median = {mode: statistics.median(values) for mode, values in rates.items()}
        cost = 1 - median["on"] / median["off"]
        verdict = "**met**" if cost <= GOAL else "**NOT MET**"
        if not lines:
            lines += ["## What the change feed costs", ""]
        lines += [
            f"Full syncs of {record['products']:,} products (no limit, concurrency "
            f"{record['concurrency']}, page size {record['page_size']}) into an empty table, each "
            "in a fresh process and database, the modes in rotating order "
            f"(`{record['command']}`, commit `{record['machine']['commit']}`).",
            "",
            "| change feed | median products/s | runs (products/s) |",
            "|---|---:|---|",
        ]
        for mode in ("off", "on", "payloads"):
            if mode in rates:
                runs = ", ".join(f"{v:,.0f}" for v in rates[mode])
                lines.append(f"| {MODES[mode]} | {median[mode]:,.0f} | {runs} |")
        lines += [
            "",
            f"The feed (default settings) costs **{cost:.1%}** of full-sync throughput (goal: at "
            f"most {GOAL:.0%}: {verdict}). Each page appends one entry per changed product in its "
            "own transaction (one executemany and a counter row); by default the entry refers to "
            "the row's payload instead of copying it.",
        ]
        if "payloads" in median:
            copy = 1 - median["payloads"] / median["off"]
            lines.append(
                f"With `[changes] store_payloads = true` every entry also copies its payload "
                f"(about as many bytes again as the products themselves): {copy:.1%}."
            )
        lines.append("")
    return lines


MODES = {
    "off": "off (`enabled = false`)",
    "on": "on (default: entries refer to the row's payload)",
    "payloads": "on, `store_payloads = true` (entries copy the payload)",
}

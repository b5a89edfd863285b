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
        cpu: dict[str, list[float]] = {}
        for run in record["runs"]:
            if run["status"] == "succeeded":
                rates.setdefault(str(run["feed"]), []).append(run["products_per_s"])
                cpu.setdefault(str(run["feed"]), []).append(run["cpu_s_per_10k"])
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
            "| change feed | median products/s | median CPU s per 10k | runs (products/s) |",
            "|---|---:|---:|---|",
        ]
        for mode in ("off", "on", "payloads"):
            if mode in rates:
                runs = ", ".join(f"{v:,.0f}" for v in rates[mode])
                cpu_10k = statistics.median(cpu[mode])
                lines.append(f"| {MODES[mode]} | {median[mode]:,.0f} | {cpu_10k:.3f} | {runs} |")
        lines += [
            "",
            f"The feed (default settings) costs **{cost:.1%}** of full-sync throughput (goal: at "
            f"most {GOAL:.0%}: {verdict}). Each page appends one entry per changed product in the "
            "page's transaction (one executemany, and one INSERT .. RETURNING on the counter row); "
            "by default the entry refers to the row's payload instead of copying it.",
        ]
        if "payloads" in median:
            copy = 1 - median["payloads"] / median["off"]
            lines.append(
                f"With `[changes] store_payloads = true` every entry also copies its payload "
                f"(about as many bytes again as the products themselves): {copy:.1%}."
            )
        before, after = record["load_before"], record["load_after"]
        lines += [
            "",
            f"Load while measuring: 1-min load average {before['loadavg'][0]:g} before, "
            f"{after['loadavg'][0]:g} after; CPU pressure (PSI, 60 s) "
            f"{before['cpu_some_avg60']:g}% before, {after['cpu_some_avg60']:g}% after. Other "
            "work shared the two CPUs, so the absolute rates are below the floors table's; the "
            "modes ran interleaved, so the ratio is the figure to read.",
            "",
        ]
    return lines


MODES = {
    "off": "off (`enabled = false`)",
    "on": "on (default: entries refer to the row's payload)",
    "payloads": "on, `store_payloads = true` (entries copy the payload)",
}

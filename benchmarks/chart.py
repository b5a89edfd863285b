"""The PNG: products/s against syncd's `max_concurrency` (the sweeps) and against the store's
limit (the rate-limited cases), for Adobe Commerce and AmeriCommerce, with the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.floors import median
from benchmarks.plan import TOLD, UNTOLD, UNTOLD_NEXT

Record = dict[str, Any]


def available() -> bool:
    """True if matplotlib (the bench extra) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def median_by_concurrency(sweep: Record, tool: str = "syncd") -> list[dict[str, Any]]:
    """One run per concurrency: the one with the median products/s."""
    by: dict[int, list[dict[str, Any]]] = {}
    for run in sweep["runs"]:
        if run["tool"] == tool:
            by.setdefault(run["concurrency"], []).append(run)
    out = []
    for concurrency in sorted(by):
        runs = sorted(by[concurrency], key=lambda r: r["products_per_s"])
        out.append(runs[len(runs) // 2])
    return out


def by_limit(
    cases: list[Record], platform: str, tool: str, variant: str | None
) -> list[tuple[float, float]]:
    """(limit, median products/s of the full runs) per rate-limited case of `platform`, largest
    catalog per limit; AmeriCommerce's limit is its calls per window left free, per second."""
    points: dict[float, tuple[int, float]] = {}
    for case in cases:
        profile = case["profile"]
        if profile.get("platform", "adobe") != platform:
            continue
        if platform == "adobe":
            limit = profile.get("rate")
        else:
            share = profile.get("share")
            limit = None if share is None else share / profile["window_s"]
        if limit is None:
            continue
        runs = [
            r["products_per_s"]
            for r in case["runs"]
            if r["tool"] == tool and r["kind"] == "full" and r["products_per_s"]
            and (variant is None or r.get("variant", "") == variant)
        ]  # fmt: skip
        if runs and case["products"] >= points.get(limit, (0, 0.0))[0]:
            points[limit] = (case["products"], median(runs))
    return sorted((limit, rate) for limit, (_, rate) in points.items())


def throughput_chart(sweeps: list[Record], cases: list[Record], path: Path) -> Path:
    """Draw the sweeps and cases to `path` (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, 2, figsize=(11, 7.5), dpi=100)
    for row, platform in enumerate(("adobe", "americommerce")):
        title = "Adobe Commerce" if platform == "adobe" else "AmeriCommerce"
        left, right = grid[row]
        sweep = next((s for s in sweeps if s["profile"].get("platform", "adobe") == platform), None)
        if sweep is not None:
            syncd = median_by_concurrency(sweep)
            xs = [r["concurrency"] for r in syncd]
            left.plot(xs, [r["products_per_s"] for r in syncd], marker="o", label="syncd")
            for base in median_by_concurrency(sweep, "baseline"):
                left.axhline(base["products_per_s"], linestyle="--", color="tab:red" if
                             base["concurrency"] == 1 else "tab:orange",
                             label=f"baseline c={base['concurrency']}")  # fmt: skip
            left.set_xscale("log", base=2)
            if xs:
                left.set_xticks(xs, [str(x) for x in xs])
            left.set_title(f"{title}: {sweep['products']:,} products, "
                           f"{sweep['profile']['description']}", fontsize=7)  # fmt: skip
        else:
            left.set_title(f"{title}: no sweep in these results", fontsize=8)
        left.set_xlabel("max_concurrency")
        left.set_ylabel("products / s")
        left.set_ylim(bottom=0)
        left.grid(True, alpha=0.3)
        if left.get_legend_handles_labels()[0]:
            left.legend(fontsize=7)
        series = (
            [("syncd told", "syncd", TOLD), ("syncd not told", "syncd", UNTOLD),
             ("syncd not told, next sync", "syncd", UNTOLD_NEXT),
             ("baseline", "baseline", None)]
            if platform == "adobe" else [("syncd", "syncd", None)]
        )  # fmt: skip
        for label, tool, variant in series:
            points = by_limit(cases, platform, tool, variant)
            if tool == "baseline":
                for concurrency in (1, 8):
                    pts = by_limit(
                        [{**c, "runs": [r for r in c["runs"] if r["concurrency"] == concurrency]}
                         for c in cases], platform, tool, None)  # fmt: skip
                    if pts:
                        right.plot(*zip(*pts, strict=True), marker="s", linestyle="--",
                                   label=f"baseline c={concurrency}")  # fmt: skip
                continue
            if points:
                right.plot(*zip(*points, strict=True), marker="o", label=label)
        unit = "rate limit (requests / s)" if platform == "adobe" else "free calls / s"
        right.set_xlabel(unit)
        right.set_ylabel("products / s")
        right.set_title(f"{title}: throughput vs. the store's limit", fontsize=8)
        right.set_ylim(bottom=0)
        right.grid(True, alpha=0.3)
        if right.get_legend_handles_labels()[0]:
            right.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path

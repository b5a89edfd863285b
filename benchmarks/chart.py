"""The PNG: products/s against syncd's `max_concurrency` on the latency profile, and the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def available() -> bool:
    """True if matplotlib (the bench extra) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def median_by_concurrency(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """One syncd run per concurrency: the one with the median products/s."""
    by: dict[int, list[dict[str, Any]]] = {}
    for run in sweep["runs"]:
        if run["tool"] == "syncd":
            by.setdefault(run["concurrency"], []).append(run)
    out = []
    for concurrency in sorted(by):
        runs = sorted(by[concurrency], key=lambda r: r["products_per_s"])
        out.append(runs[len(runs) // 2])
    return out


def throughput_chart(sweep: dict[str, Any], path: Path) -> Path:
    """Draw the sweep record to `path` (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    syncd = median_by_concurrency(sweep)
    baseline = [r for r in sweep["runs"] if r["tool"] == "baseline"]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    xs = [r["concurrency"] for r in syncd]
    repeats = sweep.get("repeats", 1)
    label = "syncd (full sync" + (f", median of {repeats})" if repeats > 1 else ")")
    axes.plot(xs, [r["products_per_s"] for r in syncd], marker="o", label=label)
    for run in syncd:
        axes.annotate(
            f"{run['products_per_s']:,.0f}",
            (run["concurrency"], run["products_per_s"]),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    if baseline:
        rate = baseline[0]["products_per_s"]
        axes.axhline(rate, color="tab:red", linestyle="--", label="baseline (reference client)")
        axes.annotate(f"{rate:,.0f}", (xs[0] if xs else 1, rate), textcoords="offset points",
                      xytext=(0, -12), fontsize=8, color="tab:red")  # fmt: skip
    axes.set_xscale("log", base=2)
    axes.set_xticks(xs, [str(x) for x in xs])
    tops = [r["products_per_s"] for r in syncd] + [r["products_per_s"] for r in baseline]
    axes.set_ylim(0, max(tops, default=1) * 1.15)
    axes.set_xlabel("syncd max_concurrency (requests in flight)")
    axes.set_ylabel("products / s")
    profile = sweep["profile"]["description"]
    axes.set_title(f"{sweep['products']:,} products, {profile}", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path

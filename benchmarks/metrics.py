"""From what a client saw and what the emulator counted to the figures the report shows."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from benchmarks.outcome import ClientOutcome
from benchmarks.plan import Profile


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Counter differences between two `stats` answers of the emulator."""
    return {key: after[key] - before[key] for key in after if isinstance(after[key], int | float)}


def run_figures(
    outcome: ClientOutcome,
    served: dict[str, float],
    profile: Profile,
    *,
    variant: str = "",
    process_wall_s: float | None = None,
) -> dict[str, Any]:
    """One run's row: the client's own measurements plus the emulator's counts of what it served.

    `allowed_share` is the accepted (non-429) requests over what the store admits in the run's
    wall time: on a token bucket its burst plus `rate` per second; on an AmeriCommerce plan the
    calls each window leaves free (the plan minus the other app's) per window the run touched. 0.9 means the client kept the store 90% busy from its first request to its last
    write. `variant` tells runs of one tool apart (`told` / `untold` the limit);
    `process_wall_s` is the client process's whole life, start-up included.
    """
    requests = int(served["requests"])
    limited = int(served["rate_limited"])
    wall = outcome.wall_s
    row: dict[str, Any] = asdict(outcome)
    row.update(
        served_requests=requests,
        served_429=limited,
        token_requests=int(served["token_requests"]),
        emulator_cpu_s=round(served["cpu_s"], 3),
        products_per_s=round(outcome.products / wall, 1) if wall > 0 else None,
        requests_per_s=round(requests / wall, 2) if wall > 0 else None,
        share_429=round(limited / requests, 4) if requests else 0.0,
        cpu_s_per_10k=round(outcome.cpu_s / outcome.products * 10_000, 3)
        if outcome.products
        else None,
        allowed_share=None,
        variant=variant,
        process_wall_s=None if process_wall_s is None else round(process_wall_s, 3),
        other_app_calls=int(served.get("other_app_calls", 0)),
        other_app_refused=int(served.get("other_app_refused", 0)),
    )
    if profile.rate is not None and wall > 0:
        allowed = (profile.burst or 1) + profile.rate * wall
        row["allowed_share"] = round((requests - limited) / allowed, 4)
    if profile.share is not None and wall > 0:
        # A run of w seconds touches w / window + 1 windows on average (it starts and ends
        # part-way through one): each leaves syncd its share.
        allowed = profile.share * (wall / profile.window + 1)
        row["allowed_share"] = round((requests - limited) / allowed, 4)
    return row

"""From what a client saw and what the emulator counted to the figures the report shows."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from benchmarks.outcome import ClientOutcome
from benchmarks.plan import Profile


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Counter differences between two `stats` answers of the emulator. On AmeriCommerce also
    `run_windows`, the call windows from the run's first accepted call to its last,
    `last_window_calls`, its accepted calls in the last of them, and `first_window_taken`, the
    calls earlier runs had made in its first (runs follow each other in one emulator)."""
    out = {key: after[key] - before[key] for key in after if isinstance(after[key], int | float)}
    earlier = before.get("client_window_calls")
    calls = _window_delta(earlier, after.get("client_window_calls"))
    if calls:
        first, last = min(calls), max(calls)
        taken = int(earlier.get(str(first), 0)) if isinstance(earlier, dict) else 0
        out.update(
            run_windows=last - first + 1, last_window_calls=calls[last], first_window_taken=taken
        )
    return out


def _window_delta(before: Any, after: Any) -> dict[int, int]:
    """Accepted calls per window index made between two answers (JSON keys are strings)."""
    if not isinstance(after, dict):
        return {}
    earlier = before if isinstance(before, dict) else {}
    calls = {int(k): int(v) - int(earlier.get(k, 0)) for k, v in after.items()}
    return {index: n for index, n in calls.items() if n > 0}


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
    calls each window leaves free (the plan minus the other app's) per window the run touched
    (see `_window_allowance`). 0.9 means the client kept the store 90% busy from its first
    request to its last write. `variant` tells runs of one tool apart (`told` / `untold` the limit);
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
        allowed = _window_allowance(profile.share, profile.window, wall, served, outcome)
        row["allowed_share"] = round((requests - limited) / allowed, 4)
    return row


def _window_allowance(
    share: int, window: float, wall: float, served: dict[str, float], outcome: ClientOutcome
) -> float:
    """The calls the windows a run touched left free to it.

    A time-boxed run of w seconds touches w / window + 1 windows on average over where in a
    window it starts (it starts and ends part-way through one), each leaving the client its
    share: a client that knew the windows' phase could use every one, the last one included
    (its calls are free from the moment it opens). A run that finished touched exactly the
    windows from its first call's to its last's, and needed only what it sent in the last
    one: counting that window's whole share would mark a sync down for being done (a 21-call
    sync with a 35-call share read as 56%). Either way the calls an earlier run made in the
    run's first window were not free to it (the harness runs one after the other)."""
    taken = min(share, served.get("first_window_taken", 0))
    windows = served.get("run_windows")
    if outcome.time_boxed or windows is None:
        return max(1.0, share * (wall / window + 1) - taken)
    last = min(share, served.get("last_window_calls", share))
    if windows == 1:
        return max(1.0, last)
    return max(1.0, share * (windows - 1) - taken + last)

"""429 storm: 30% of the API's answers are 429 with Retry-After: 1, then the storm passes.

Timed on the lab's virtual clock from the emulator's own request log (`at`: when a request reached
the API) and syncd's log events (stamped with the same clock, and with how many requests the API
had logged by then): every worker waits out each pause, the rate is cut and logged, and won back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from syncd.emulator import Fault
from syncd.emulator.stats import RequestRecord
from syncd.sync import SyncResult
from tests.faults.lab import LAB_HTTP, Event, FaultLab

STORM = Fault("status", status=429, probability=0.3, after=20, times=30)
# Recovery sped up (a quarter of the rate back each second, instead of 5% every 2 s) so that the
# rate is won back inside the run: the same mechanism, fewer requests.
STORM_HTTP = LAB_HTTP.model_copy(update={"rate_recovery_step": 0.25, "rate_recovery_interval": 1.0})
WORKERS = 8
PRODUCTS = 1200
EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Storm:
    """The storm run: its result, the requests the API saw (in arrival order), syncd's events."""

    result: SyncResult
    log: list[RequestRecord]
    first: int  # index of log[0] in the emulator's whole request log
    events: list[Event]
    before: dict[str, dict[str, Any]]
    changed: set[str]

    def named(self, event: str) -> list[Event]:
        """The run's events named `event`."""
        return [e for e in self.events if e["event"] == event]

    def since(self, event: Event) -> list[RequestRecord]:
        """The requests that reached the API after `event` was logged."""
        return self.log[event["served"] - self.first :]


def page(record: RequestRecord) -> str:
    """The page a request asked for."""
    return record.query["searchCriteria[currentPage]"]


async def ride_out(lab: FaultLab) -> Storm:
    """A good first sync, a little churn, then a full run through the storm."""
    emu = await lab.start_emulator(products=PRODUCTS)
    await lab.open(lab.source(max_concurrency=WORKERS), http=STORM_HTTP)
    before = lab.stored()
    changed = lab.change_catalog()
    # The next run comes a minute later: its rate is measured on its own requests only.
    lab.clock.advance(60)
    first, seen = len(emu.adobe.stats.log), len(lab.logs)
    lab.inject(STORM)
    result = await lab.sync(kind="full")
    log = list(emu.adobe.stats.log)[first:]
    return Storm(result, log, first, lab.logs[seen:], before, changed)


async def test_a_429_storm_pauses_every_worker_cuts_the_rate_and_wins_it_back(
    lab: FaultLab,
) -> None:
    """No request leaves within Retry-After of a 429, one cut per flight of requests, the cut rate
    holds, the rate comes back once the storm is over; nothing lost, the daemon runs on."""
    storm = await ride_out(lab)
    result = storm.result
    lab.expect(result.ok, result.error)
    t = result.totals
    limited = [i for i, r in enumerate(storm.log) if r.status == 429]
    lab.expect(
        len(limited) == t.rate_limited == t.retries == STORM.times,
        "len(limited) == t.rate_limited == t.retries == STORM.times",
    )
    # The pages, the catalog probe, and one repeat per 429.
    lab.expect(
        t.requests == len(storm.log) == math.ceil((PRODUCTS + 1) / 10) + 1 + STORM.times,
        "t.requests == len(storm.log) == math.ceil((PRODUCTS + 1) / 10) + 1 + STORM.times",
    )
    # While it lasted, the storm hit about 30% of the answers (seeded draws).
    lab.expect(
        0.2 <= len(limited) / (limited[-1] - limited[0] + 1) <= 0.45,
        "0.2 <= len(limited) / (limited[-1] - limited[0] + 1) <= 0.45",
    )

    paused = storm.named("http.rate_limited")
    lab.expect(
        len(paused) == STORM.times and {e["retry_after"] for e in paused} == {1.0},
        'len(paused) == STORM.times and {e["retry_after"] for e in paused} == {1.0}',
    )
    pause = 1.0
    # The page a 429 answered is asked again no sooner than Retry-After later ...
    for i in limited:
        answered = storm.log[i]
        retry = next(r for r in storm.log[i + 1 :] if page(r) == page(answered))
        lab.expect(retry.at >= answered.at + pause - EPS, (page(answered), answered.at, retry.at))
    # ... and no other worker sends meanwhile: once syncd has seen the 429, only requests that
    # were already on their way (one per other worker, at most) reach the API before the end.
    for event in paused:
        early = [r for r in storm.since(event) if r.at < event["at"] + pause - EPS]
        lab.expect(len(early) <= WORKERS - 1, (event["at"], [(r.at, page(r)) for r in early]))

    changes = storm.named("http.rate_adjusted")
    cuts = [e for e in changes if e["reason"] == "rate_limited"]
    lab.expect(cuts, "a 429 must lower the source's rate")
    floor = STORM_HTTP.rate_floor
    for cut in cuts:
        if cut["old_rate"] is not None:
            lab.expect(floor <= cut["new_rate"] < cut["old_rate"], cut)
    # One cut per flight: the 429s of requests sent before a cut cut nothing more, and requests
    # sent after it leave only once its pause is over; so cuts are at least a pause apart.
    lab.expect(
        all(b["at"] - a["at"] >= pause - EPS for a, b in pairwise(cuts)),
        'all(b["at"] - a["at"] >= pause - EPS for a, b in pairwise(cuts))',
    )
    # The cut rate holds: in the second after each cut's pause, no more requests reach the API
    # than the new rate lets through, plus those that had passed the throttle before the cut.
    for cut in cuts:
        start = cut["at"] + pause
        window = [r for r in storm.since(cut) if start - EPS <= r.at < start + 1 - EPS]
        lab.expect(len(window) <= math.ceil(cut["new_rate"]) + WORKERS - 1, (cut, len(window)))

    # Between cuts, and once the storm is over, the rate climbs back: each rate held without a
    # 429 is proven and a higher one tried. The source has no configured rate, so it stays paced
    # at what it proved (released at full speed, a real limit drew a 429 each time).
    after = changes[changes.index(cuts[-1]) + 1 :]
    lab.expect(after and {e["reason"] for e in after} <= {"proven", "probing"}, after)
    rates = [cuts[-1]["new_rate"], *(e["new_rate"] for e in after)]
    lab.expect(rates == sorted(rates) and rates[-1] > rates[0], rates)

    stored = lab.stored()
    lab.expect(
        all(stored[sku] == item for sku, item in storm.before.items() if sku not in storm.changed),
        "all(         stored[sku] == item for sku, item in storm.before.items() if sku not in storm.changed     )",
    )
    check = lab.verify()
    lab.expect(check.exact, check)
    await lab.finish("rate-limit-storm")

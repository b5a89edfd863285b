"""Which requests fail on purpose: faults are matched in the order they were added."""

from __future__ import annotations

import random
from dataclasses import dataclass

from syncd.clock import Clock
from syncd.emulator.config import Fault, FaultTarget


@dataclass(slots=True)
class _Armed:
    fault: Fault
    remaining: int | None
    armed_at: float
    seen: int = 0


class FaultInjector:
    """Holds armed faults; `draw` decides (with a seeded RNG) whether a request is hit."""

    def __init__(self, rng: random.Random, clock: Clock | None = None) -> None:
        self._rng = rng
        self._clock = clock
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> None:
        """Arm a fault; it fires `times` times (None: until cleared) after skipping `after`."""
        if fault.duration is not None and self._clock is None:
            raise ValueError("a Fault with a duration needs a FaultInjector with a clock")
        self._armed.append(_Armed(fault, fault.times, self._now()))

    def clear(self) -> None:
        """Disarm every fault."""
        self._armed.clear()

    def __len__(self) -> int:
        return len(self._armed)

    @property
    def armed(self) -> list[Fault]:
        """The faults still armed, in matching order."""
        return [a.fault for a in self._armed]

    def draw(
        self,
        target: FaultTarget,
        *,
        reused: bool = False,
        page: int | None = None,
        changes: bool = False,
    ) -> Fault | None:
        """The fault that hits this request to `target`, if any (each fault counts the request).

        `reused` says whether the request came on a connection that has already served one;
        `page` is the offset page of a full scan it asks for (None: not such a request);
        `changes` whether it is a keyset page of an incremental read.
        """
        now = self._now()
        self._armed = [a for a in self._armed if not _expired(a, now)]
        eligible: list[_Armed] = []
        for armed in self._armed:
            if armed.fault.target != target or (armed.fault.reused_only and not reused):
                continue
            if not page_matches(armed.fault, page, changes):
                continue
            armed.seen += 1
            if armed.seen > armed.fault.after:
                eligible.append(armed)
        for armed in eligible:
            probability = armed.fault.probability
            if probability < 1.0 and self._rng.random() >= probability:
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining <= 0:
                    self._armed.remove(armed)
            return armed.fault
        return None

    def _now(self) -> float:
        return self._clock.monotonic() if self._clock is not None else 0.0


def _expired(armed: _Armed, now: float) -> bool:
    duration = armed.fault.duration
    return duration is not None and now >= armed.armed_at + duration


# -- page faults: a cache or proxy that serves a scan's page empty, short, mixed up or old --

PAGE_FAULTS = frozenset({"empty_page", "short_page", "duplicate_sku", "stale_page"})


def page_matches(fault: Fault, page: int | None, changes: bool = False) -> bool:
    """Whether `fault` may hit a request for offset page `page` (None: not a full-scan page),
    or, for a fault on the incremental reads, a keyset page of one (`changes`)."""
    if fault.kind not in PAGE_FAULTS:
        return True
    if fault.changes:
        return changes
    if page is None:
        return False
    return page == fault.page if fault.page is not None else page > 1

"""The emulator's server-cost model: page time grows with the page and the catalog; a pool of
workers serves only so many pages at once (on virtual time: no real waiting)."""

from __future__ import annotations

import asyncio

import pytest

from syncd.emulator.cost import ServerCost, ServerTime
from tests.clocks import VirtualClock


def test_page_time_grows_with_page_size_and_catalog() -> None:
    """base + per_item * items + per_log10 * log10(catalog)."""
    cost = ServerCost(base=0.004, per_item=0.0001, per_log10_catalog=0.001)
    assert cost.seconds(100, 10_000) == pytest.approx(0.004 + 0.01 + 0.004)
    assert cost.seconds(100, 1_000_000) > cost.seconds(100, 10_000)
    assert cost.seconds(200, 10_000) > cost.seconds(100, 10_000)
    assert "4 workers" in cost.describe()


@pytest.mark.parametrize("bad", [{"base": -1.0}, {"workers": 0}])
def test_a_cost_must_make_sense(bad: dict[str, float]) -> None:
    """Negative times or no worker are refused."""
    with pytest.raises(ValueError, match="ServerCost"):
        ServerCost(**bad)  # type: ignore[arg-type]


def test_workers_bound_how_many_pages_are_served_at_once() -> None:
    """8 pages of 0.1 s on 4 workers take 0.2 s; without a cost they take nothing."""

    async def main(cost: ServerCost | None) -> float:
        server = ServerTime(cost)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(server.page(100, 1000) for _ in range(8)))
        return loop.time() - start

    for cost, took in ((ServerCost(base=0.1, workers=4), 0.2), (None, 0.0)):
        assert VirtualClock(advance="loop").run(main(cost)) == pytest.approx(took, abs=1e-3)

"""Shared fixtures: a FakeClock, a client session, and small emulators with helpers to call them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import pytest

from syncd.emulator import AdobeConfig, AmeriCommerceConfig, Emulator, EmulatorConfig
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AcCaller, AdobeCaller, StartEmulator


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when told to."""
    return FakeClock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real aiohttp client."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def start(clock: FakeClock) -> AsyncIterator[StartEmulator]:
    """Start emulators with given platform configs; all are closed at teardown."""
    async with AsyncExitStack() as stack:

        async def starter(
            adobe: AdobeConfig | None = None,
            americommerce: AmeriCommerceConfig | None = None,
            seed: int = 7,
        ) -> Emulator:
            config = EmulatorConfig(
                adobe=adobe or AdobeConfig(products=300),
                americommerce=americommerce or AmeriCommerceConfig(products=120),
                seed=seed,
            )
            return await stack.enter_async_context(Emulator(config, clock=clock))

        yield starter


@pytest.fixture
async def emu(start: StartEmulator) -> Emulator:
    """An emulator with 300 Adobe and 120 AmeriCommerce products."""
    return await start()


@pytest.fixture
def adobe(emu: Emulator, session: aiohttp.ClientSession) -> AdobeCaller:
    """A caller for the default emulator's Adobe side."""
    return AdobeCaller(emu, session)


@pytest.fixture
def ac(emu: Emulator, session: aiohttp.ClientSession) -> AcCaller:
    """A caller for the default emulator's AmeriCommerce side."""
    return AcCaller(emu, session)

"""A loopback stand-in for Adobe Commerce (IMS + REST) and AmeriCommerce, faithful to their refusals.

async with Emulator(EmulatorConfig(seed=1), clock=clock) as emu:
    emu.url, emu.ims_token_url, emu.adobe.catalog, emu.americommerce.stats, ...
"""

from __future__ import annotations

from syncd.emulator.config import (
    AdobeConfig,
    AmeriCommerceConfig,
    EmulatorConfig,
    Fault,
    RateLimitConfig,
)
from syncd.emulator.cost import ServerCost
from syncd.emulator.server import Emulator, serve

__all__ = [
    "AdobeConfig",
    "AmeriCommerceConfig",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "RateLimitConfig",
    "ServerCost",
    "serve",
]

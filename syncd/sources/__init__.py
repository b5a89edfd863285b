"""Platform adapters behind the `Source` protocol (the daemon's wiring builds them: `syncd.wiring`)."""

from __future__ import annotations

from syncd.sources.adobe_commerce import AdobeCommerceSource
from syncd.sources.americommerce import AmeriCommerceSource
from syncd.sources.base import Page, Source

__all__ = [
    "AdobeCommerceSource",
    "AmeriCommerceSource",
    "Page",
    "Source",
]

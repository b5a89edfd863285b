"""The AmeriCommerce side of the emulator: its signature OAuth (oauth.py) and its REST catalog
(app.py, products.py, query.py)."""

from syncd.emulator.americommerce.app import AmeriCommerceEmulator

__all__ = ["AmeriCommerceEmulator"]

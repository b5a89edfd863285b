"""The Adobe side of the emulator: Adobe IMS (ims.py), the Adobe Commerce / Magento REST catalog
(app.py, products.py, search_criteria.py) and a Magento store's integration credentials
(magento_integration.py)."""

from syncd.emulator.adobe.app import AdobeEmulator

__all__ = ["AdobeEmulator"]

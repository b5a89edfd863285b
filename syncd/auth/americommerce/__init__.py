"""AmeriCommerce's signature OAuth: the token provider that refreshes a grant (refresh.py), the
signatures (signatures.py), the OAuth wire format (wire.py), and the operator's `syncd auth` flows
(bootstrap.py, with callback.py listening for the web flow's redirect)."""

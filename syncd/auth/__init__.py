"""Authentication: token providers per platform and the token cache they share."""

from syncd.auth.cache import TokenCache
from syncd.auth.provider import EndpointResponse, RequestSigner, TokenEndpoint, TokenProvider
from syncd.auth.token import AccessToken, fingerprint

__all__ = [
    "AccessToken",
    "EndpointResponse",
    "RequestSigner",
    "TokenCache",
    "TokenEndpoint",
    "TokenProvider",
    "fingerprint",
]

"""The integration providers on their own: what they cache, and what an OAuth 1.0a header holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlencode

import pytest
from oauthlib.common import Request
from oauthlib.oauth1.rfc5849 import signature, utils
from pydantic import SecretStr

from syncd.auth.magento_integration import IntegrationBearerProvider, IntegrationOAuth1Provider
from syncd.config import IntegrationBearerAuthSettings, IntegrationOAuth1AuthSettings
from tests.clocks import FakeClock

URL = "https://shop.example.com/rest/default/V1/products"
PARAMS = {
    "searchCriteria[filter_groups][0][filters][0][value]": "2025-12-05 00:22:02",
    "searchCriteria[pageSize]": "100",
    "fields": "items[id,sku],total_count",
}


def oauth1(method: str = "HMAC-SHA256") -> IntegrationOAuth1AuthSettings:
    return IntegrationOAuth1AuthSettings.model_validate(
        {
            "kind": "oauth1",
            "consumer_key": "ck",
            "consumer_secret": "consumer-secret",
            "access_token": "access-token",
            "access_token_secret": "token-secret",
            "signature_method": method,
        }
    )


def verified(header: str, method: str, secret: str = "consumer-secret") -> bool:
    """oauthlib's server-side check of `header` for GET URL?PARAMS."""
    params = [
        (utils.unescape(k), utils.unescape(v)) for k, v in utils.parse_authorization_header(header)
    ]
    request: Any = Request(f"{URL}?{urlencode(PARAMS)}", cast(Any, "GET"))
    request.params = signature.collect_parameters(
        uri_query=urlencode(PARAMS), headers={"Authorization": header}, exclude_oauth_signature=True
    )
    request.signature = dict(params)["oauth_signature"]
    check = signature.verify_hmac_sha256 if method == "HMAC-SHA256" else signature.verify_hmac_sha1
    return bool(check(request, secret, "token-secret"))


@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1"])
async def test_oauth1_header_is_verifiable_and_uses_the_clock_and_a_fresh_nonce(
    method: str,
) -> None:
    """The header names the method, the injected clock's second and the injected nonce, and
    oauthlib's server side verifies it (and refuses it with another consumer secret)."""
    clock = FakeClock(datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC))
    nonces = iter(["nonce-1", "nonce-2"])
    provider = IntegrationOAuth1Provider(oauth1(method), URL, clock, nonce=lambda: next(nonces))
    token = await provider.obtain(None)
    header = provider.request_headers(token, "GET", URL, PARAMS)["Authorization"]
    fields = dict(utils.parse_authorization_header(header))
    assert fields["oauth_signature_method"] == method
    assert fields["oauth_timestamp"] == str(int(clock.now().timestamp()))
    assert (fields["oauth_nonce"], fields["oauth_consumer_key"]) == ("nonce-1", "ck")
    assert verified(header, method)
    assert not verified(header, method, secret="another-secret")
    again = provider.request_headers(token, "GET", URL, PARAMS)["Authorization"]
    assert dict(utils.parse_authorization_header(again))["oauth_nonce"] == "nonce-2"
    with pytest.raises(NotImplementedError):
        provider.auth_headers(token)


async def test_integration_tokens_never_expire_and_cache_no_secret() -> None:
    """Both kinds hand out a non-expiring token holding a fingerprint; a new token, a new key."""
    clock = FakeClock()
    bearer = IntegrationBearerProvider(
        IntegrationBearerAuthSettings.model_validate({"kind": "bearer", "access_token": "tok-1"}),
        URL,
        clock,
    )
    token = await bearer.obtain(None)
    assert token.expires_at is None and token.value.startswith("sha256:")
    assert "tok-1" not in token.value
    assert bearer.auth_headers(token) == {"Authorization": "Bearer tok-1"}
    other = IntegrationBearerProvider(
        IntegrationBearerAuthSettings.model_validate({"kind": "bearer", "access_token": "tok-2"}),
        URL,
        clock,
    )
    assert other.cache_key != bearer.cache_key
    signer = IntegrationOAuth1Provider(oauth1(), URL, clock)
    assert (await signer.obtain(None)).expires_at is None
    assert signer.cache_key not in (bearer.cache_key, other.cache_key)
    rotated = oauth1().model_copy(update={"consumer_secret": SecretStr("rotated")})
    assert IntegrationOAuth1Provider(rotated, URL, clock).cache_key != signer.cache_key
    assert IntegrationOAuth1Provider(oauth1(), URL, clock).cache_key == signer.cache_key

"""A Magento store reached directly: integration bearer tokens, OAuth 1.0a signatures, store codes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import aiohttp
import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, Client
from pydantic import SecretStr

from syncd.auth.magento_integration import IntegrationOAuth1Provider
from syncd.auth.token import AccessToken
from syncd.config import IntegrationOAuth1AuthSettings
from syncd.emulator import AdobeConfig, Emulator
from syncd.sources.adobe_commerce import changed_params
from syncd.sources.base import Cursor
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AdobeCaller, Answer, StartEmulator, criteria

UNAUTHORIZED = {
    "message": "The consumer isn't authorized to access %resources.",
    "parameters": {"resources": "Magento_Catalog::products"},
}
_TOKEN = AccessToken("fingerprint", None, FakeClock().now())


def oauth_settings(emu: Emulator, **overrides: str) -> IntegrationOAuth1AuthSettings:
    """The emulator's integration as syncd's OAuth 1.0a settings, some values overridden."""
    cfg = emu.config.adobe
    fields = {
        "kind": "oauth1",
        "consumer_key": cfg.integration_consumer_key,
        "consumer_secret": cfg.integration_consumer_secret,
        "access_token": cfg.integration_access_token,
        "access_token_secret": cfg.integration_access_token_secret,
    }
    fields.update(overrides)
    return IntegrationOAuth1AuthSettings.model_validate(fields)


async def signed_get(
    emu: Emulator,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    params: Mapping[str, str],
    *,
    path: str = "/rest/V1/products",
    nonce: str | None = None,
    **overrides: str,
) -> Answer:
    """GET `path?params` signed by syncd's signer the way the source client signs it."""
    nonces = iter([nonce] if nonce else [])
    signer = IntegrationOAuth1Provider(
        oauth_settings(emu, **overrides),
        emu.url,
        clock,
        nonce=(lambda: next(nonces)) if nonce else None,
    )
    url = emu.url + path
    headers = signer.request_headers(_TOKEN, "GET", url, params)
    async with session.get(url, params=params, headers=headers) as response:
        return Answer(response.status, response.headers, await response.text())


async def bearer_get(
    emu: Emulator, session: aiohttp.ClientSession, token: str, path: str = "/rest/V1/products"
) -> Answer:
    """GET with only `Authorization: Bearer token`: no gateway headers."""
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(emu.url + path, params=criteria(page_size=2), headers=headers) as r:
        return Answer(r.status, r.headers, await r.text())


async def test_integration_token_is_a_bearer_token_without_the_gateway(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """The integration's access token alone is accepted; no api key or org is needed."""
    answer = await bearer_get(emu, session, emu.config.adobe.integration_access_token)
    assert answer.status == 200, answer.text
    assert len(answer.json()["items"]) == 2


async def test_bad_bearer_token_is_magentos_401(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """Any other bearer token leaves the request a guest's: Magento's 401 body, counted."""
    answer = await bearer_get(emu, session, "x" * 32)
    assert (answer.status, answer.json()) == (401, UNAUTHORIZED)
    assert emu.adobe.stats.unauthorized == 1


async def test_bearer_refused_when_standalone_bearer_tokens_are_off(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """Before 2.4.4, or with the setting off, the integration token is no bearer token."""
    emu = await start(adobe=AdobeConfig(products=5, integration_bearer=False))
    answer = await bearer_get(emu, session, emu.config.adobe.integration_access_token)
    assert (answer.status, answer.json()) == (401, UNAUTHORIZED)


async def test_ims_token_without_api_key_is_still_the_gateways_403(adobe: AdobeCaller) -> None:
    """A request with an IMS token meant the gateway: without x-api-key it is refused there."""
    headers = {"Authorization": f"Bearer {await adobe.token()}"}
    answer = await adobe.get(criteria(page_size=1), headers)
    assert (answer.status, answer.json()["error_code"]) == (403, "403000")


async def test_signed_requests_are_accepted(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """syncd's signature over a real searchCriteria query (spaces, brackets) is verified."""
    params = changed_params(Cursor(clock.now() - timedelta(days=400), after_id=3), 5)
    answer = await signed_get(emu, session, clock, params)
    assert answer.status == 200, answer.text
    assert answer.json()["total_count"] > 0
    fields = criteria(page_size=3, fields="items[id,sku],total_count")
    listing = await signed_get(emu, session, clock, fields)
    assert listing.status == 200, listing.text
    assert emu.adobe.integration.signed == 2


async def test_plain_oauthlib_hmac_sha1_signature_is_accepted(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Magento also takes HMAC-SHA1; a signature made by oauthlib's client directly holds."""
    cfg = emu.config.adobe
    url = emu.url + "/rest/V1/products?searchCriteria%5BpageSize%5D=3"
    client = Client(
        cfg.integration_consumer_key,
        client_secret=cfg.integration_consumer_secret,
        resource_owner_key=cfg.integration_access_token,
        resource_owner_secret=cfg.integration_access_token_secret,
        signature_method=SIGNATURE_HMAC_SHA1,
        timestamp=str(int(clock.now().timestamp())),
    )
    _, headers, _ = client.sign(url)
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert len((await response.json())["items"]) == 3


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"consumer_secret": "y" * 32}, 401, "The signature is invalid. Verify and try again."),
        ({"access_token_secret": "y" * 32}, 401, "The signature is invalid. Verify and try again."),
        ({"access_token": "y" * 32}, 401, "Specified token does not exist"),
        (
            {"access_token": "short"},
            400,
            "The token length is invalid. Check the length and try again.",
        ),
        ({"consumer_key": "z" * 32}, 401, "A consumer having the specified key does not exist"),
        ({"consumer_key": "short"}, 401, "Consumer key is not the correct length"),
    ],
    ids=["consumer-secret", "token-secret", "token", "token-length", "consumer", "key-length"],
)
async def test_bad_integration_credentials_are_refused_in_magentos_words(
    emu: Emulator,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    overrides: dict[str, str],
    status: int,
    message: str,
) -> None:
    """Each wrong credential gets the status and message Magento's OAuth code gives it."""
    answer = await signed_get(emu, session, clock, criteria(page_size=1), **overrides)
    assert (answer.status, answer.json()) == (status, {"message": message})
    assert emu.adobe.stats.unauthorized == 1
    assert emu.adobe.integration.signed == 0


async def test_a_reused_nonce_is_refused(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A replayed nonce is Magento's 401, even a minute later with a new signature."""
    first = await signed_get(emu, session, clock, criteria(page_size=1), nonce="n-1")
    assert first.status == 200
    clock.advance(60)
    again = await signed_get(emu, session, clock, criteria(page_size=1), nonce="n-1")
    assert again.status == 401
    assert again.json() == {
        "message": "The nonce is already being used by the consumer with ID %1",
        "parameters": [1],
    }


async def test_timestamps_ahead_are_refused_and_old_ones_are_not(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Magento refuses a timestamp more than 600 s ahead of its clock (a 400) and accepts an
    old one: only the nonce stops a replay."""
    ahead = FakeClock(clock.now() + timedelta(seconds=601))
    answer = await signed_get(emu, session, ahead, criteria(page_size=1))
    assert answer.status == 400
    assert answer.json() == {
        "message": "Incorrect timestamp value in the oauth_timestamp parameter"
    }
    within = FakeClock(clock.now() + timedelta(seconds=590))
    assert (await signed_get(emu, session, within, criteria(page_size=1))).status == 200
    old = FakeClock(clock.now() - timedelta(days=1))
    assert (await signed_get(emu, session, old, criteria(page_size=1))).status == 200


async def test_missing_oauth_parameter_is_a_400_naming_it(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """An OAuth header without a nonce is Magento's OauthInputException."""
    cfg = emu.config.adobe
    header = (
        f'OAuth oauth_consumer_key="{cfg.integration_consumer_key}", '
        f'oauth_token="{cfg.integration_access_token}", oauth_signature_method="HMAC-SHA256", '
        'oauth_timestamp="1", oauth_signature="abc"'
    )
    async with session.get(emu.url + "/rest/V1/products", headers={"Authorization": header}) as r:
        assert r.status == 400
        assert await r.json() == {
            "message": '"%fieldName" is required. Enter and try again.',
            "parameters": {"fieldName": "oauth_nonce"},
        }


async def test_store_codes_with_integration_credentials(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A configured store code is served; an unknown one is unrouted (404) before any auth."""
    ok = await signed_get(
        emu, session, clock, criteria(page_size=1), path="/rest/default/V1/products"
    )
    assert ok.status == 200, ok.text
    token = emu.config.adobe.integration_access_token
    assert (await bearer_get(emu, session, token, "/rest/all/V1/products")).status == 200
    for answer in (
        await signed_get(emu, session, clock, criteria(page_size=1), path="/rest/fr/V1/products"),
        await bearer_get(emu, session, "wrong", "/rest/fr/V1/products"),
    ):
        assert (answer.status, answer.json()) == (
            404,
            {"message": "Request does not match any route."},
        )


async def test_configured_store_codes_are_served(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """store_codes lists the store views the emulated store has."""
    emu = await start(adobe=AdobeConfig(products=5, store_codes=("default", "fr_store")))
    token = emu.config.adobe.integration_access_token
    assert (await bearer_get(emu, session, token, "/rest/fr_store/V1/products")).status == 200
    assert (await bearer_get(emu, session, token, "/rest/de/V1/products")).status == 404


def test_settings_carry_no_secret_in_repr() -> None:
    """The settings model never shows the integration's secrets."""
    settings = IntegrationOAuth1AuthSettings(
        kind="oauth1",
        consumer_key="k" * 32,
        consumer_secret=SecretStr("CONSUMER-SECRET"),
        access_token=SecretStr("ACCESS-TOKEN"),
        access_token_secret=SecretStr("TOKEN-SECRET"),
    )
    text = repr(settings)
    assert "CONSUMER-SECRET" not in text and "ACCESS-TOKEN" not in text
    assert "TOKEN-SECRET" not in text


async def test_a_revoked_integration_token_is_refused_both_ways(
    emu: Emulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Revoked: the bearer call is a guest's 401, the signed one names the revocation."""
    emu.adobe.set_integration_revoked(True)
    token = emu.config.adobe.integration_access_token
    assert (await bearer_get(emu, session, token)).json() == UNAUTHORIZED
    signed = await signed_get(emu, session, clock, criteria(page_size=1))
    assert (signed.status, signed.json()) == (401, {"message": "Access token has been revoked"})
    emu.adobe.set_integration_revoked(False)
    assert (await bearer_get(emu, session, token)).status == 200

"""IMS token grant and the gateway's checks in front of the Adobe Commerce product API."""

from __future__ import annotations

import aiohttp
import pytest

from syncd.emulator import AdobeConfig, Emulator
from tests.clocks import FakeClock
from tests.emulator.emulator_helpers import AdobeCaller, StartEmulator, criteria

_UNAUTHORIZED = {
    "message": "The consumer isn't authorized to access %resources.",
    "parameters": {"resources": "Magento_Catalog::products"},
}


async def test_token_grant_answers_bearer_with_lifetime(adobe: AdobeCaller, emu: Emulator) -> None:
    """A correct client_credentials grant yields a bearer token, its lifetime, no refresh token."""
    answer = await adobe.token_answer()
    assert answer.status == 200
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    assert "refresh_token" not in body
    assert body["access_token"] in emu.adobe.issued_tokens
    assert emu.adobe.stats.token_requests == 1


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"client_secret": "wrong"}, "invalid_client", "invalid client_secret parameter"),
        ({"client_id": "someone-else"}, "invalid_client", "invalid client_id parameter"),
        ({"client_id": ""}, "invalid_request", "missing client_id parameter"),
        ({"grant_type": "password"}, "unsupported_grant_type", None),
        ({"grant_type": ""}, "invalid_request", None),
        ({"scope": "openid,AdobeID"}, "invalid_scope", None),
    ],
)
async def test_token_refusals_are_ims_style_400(
    adobe: AdobeCaller, overrides: dict[str, str], error: str, description: str | None
) -> None:
    """Every refused grant is a 400 with IMS's error and error_description."""
    answer = await adobe.token_answer(**overrides)
    assert answer.status == 400
    body = answer.json()
    assert body["error"] == error
    if description is not None:
        assert body["error_description"] == description


async def test_token_endpoint_reads_form_bodies_only(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A JSON body carries no form fields, so IMS sees no client_id."""
    cfg = emu.config.adobe
    payload = {"grant_type": "client_credentials", "client_id": cfg.client_id}
    async with session.post(emu.ims_token_url, json=payload) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"


async def test_disabled_client_is_invalid_client(adobe: AdobeCaller, emu: Emulator) -> None:
    """set_client_disabled makes the configured credentials answer invalid_client."""
    emu.adobe.set_client_disabled(True)
    answer = await adobe.token_answer()
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_client"
    emu.adobe.set_client_disabled(False)
    assert (await adobe.token_answer()).status == 200


async def test_api_key_is_checked_by_the_gateway(adobe: AdobeCaller) -> None:
    """A missing or foreign x-api-key is the gateway's 403, before Magento sees the request."""
    headers = await adobe.headers()
    missing = {k: v for k, v in headers.items() if k != "x-api-key"}
    answer = await adobe.get(criteria(page_size=1), missing)
    assert (answer.status, answer.json()["error_code"]) == (403, "403000")
    answer = await adobe.get(criteria(page_size=1), {**headers, "x-api-key": "other"})
    assert (answer.status, answer.json()["error_code"]) == (403, "403003")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: {k: v for k, v in h.items() if k != "Authorization"},
        lambda h: {**h, "Authorization": "Bearer not-a-token"},
        lambda h: {**h, "Authorization": h["Authorization"].replace("Bearer", "Basic")},
        lambda h: {**h, "x-gw-ims-org-id": "OTHER@AdobeOrg"},
    ],
    ids=["no-token", "unknown-token", "not-bearer", "wrong-org"],
)
async def test_bad_credentials_get_magentos_401(adobe: AdobeCaller, emu: Emulator, mangle) -> None:  # type: ignore[no-untyped-def]
    """Token or org problems answer Magento's 401 body and count as unauthorized."""
    answer = await adobe.get(criteria(page_size=1), mangle(await adobe.headers()))
    assert answer.status == 401
    assert answer.json() == _UNAUTHORIZED
    assert emu.adobe.stats.unauthorized == 1
    assert emu.adobe.stats.expired_token_requests == 0


async def test_expired_token_is_refused_and_counted(
    adobe: AdobeCaller, emu: Emulator, clock: FakeClock
) -> None:
    """A token used after expires_in seconds is a 401 and an expired_token_request."""
    headers = await adobe.headers()
    clock.advance(86398)
    assert (await adobe.get(criteria(page_size=1), headers)).status == 200
    clock.advance(1)
    answer = await adobe.get(criteria(page_size=1), headers)
    assert answer.status == 401
    assert emu.adobe.stats.expired_token_requests == 1
    assert emu.adobe.stats.requests == 2


async def test_revoked_tokens_stop_working(adobe: AdobeCaller, emu: Emulator) -> None:
    """revoke_tokens() turns every issued token into a 401; a new grant works again."""
    headers = await adobe.headers()
    assert (await adobe.get(criteria(page_size=1), headers)).status == 200
    emu.adobe.revoke_tokens()
    assert (await adobe.get(criteria(page_size=1), headers)).status == 401
    assert (await adobe.get(criteria(page_size=1))).status == 200


async def test_gateway_error_style_for_bad_tokens(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """With auth_error_style='gateway' a bad token gets the I/O gateway's 401013 body."""
    emu = await start(adobe=AdobeConfig(products=10, auth_error_style="gateway"))
    caller = AdobeCaller(emu, session)
    answer = await caller.get(criteria(page_size=1), await caller.headers("nope"))
    assert answer.status == 401
    assert answer.json() == {"error_code": "401013", "message": "Oauth token is not valid"}


async def test_custom_lifetime_is_reported(
    start: StartEmulator, session: aiohttp.ClientSession
) -> None:
    """token_lifetime sets expires_in."""
    emu = await start(adobe=AdobeConfig(products=1, token_lifetime=120))
    answer = await AdobeCaller(emu, session).token_answer()
    assert answer.json()["expires_in"] == 120

"""Adobe IMS token provider: what it sends, and the `expires_in` it accepts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta

import pytest

from syncd.auth import EndpointResponse
from syncd.auth.ims import ImsTokenProvider
from syncd.config import ImsAuthSettings
from syncd.errors import AuthError
from syncd.redaction import fingerprint
from tests.clocks import FakeClock

SECRET = "ims-client-secret-do-not-log"


class RawEndpoint:
    """A token endpoint answering `status` with a fixed raw JSON body; records what it was sent."""

    def __init__(self, body: str, status: int = 200) -> None:
        self.body = body
        self.status = status
        self.sent: list[dict[str, str]] = []

    async def post_form(
        self, url: str, fields: Mapping[str, str], *, as_json: bool = False
    ) -> EndpointResponse:
        self.sent.append({**fields, "as_json": str(as_json)})
        return EndpointResponse(self.status, "application/json;charset=UTF-8", self.body.encode())


def _provider(body: str, clock: FakeClock) -> tuple[ImsTokenProvider, RawEndpoint]:
    settings = ImsAuthSettings(client_id="cid", client_secret=SECRET, org_id="ORG@AdobeOrg")  # type: ignore[arg-type]
    endpoint = RawEndpoint(body)
    return ImsTokenProvider(settings, endpoint, clock), endpoint


@pytest.mark.parametrize(
    ("raw", "seconds"), [("86399", 86399), ('"3600"', 3600), ("1.5", 1.5), ("1e9", 1e9)]
)
async def test_expires_in_sets_the_expiry(clock: FakeClock, raw: str, seconds: float) -> None:
    """A positive number of seconds (or a numeric string) becomes now + that many seconds."""
    provider, endpoint = _provider(
        f'{{"access_token": "ims-access-value", "expires_in": {raw}}}', clock
    )
    token = await provider.obtain(None)
    assert token.expires_at == clock.now() + timedelta(seconds=seconds)
    (sent,) = endpoint.sent
    assert (sent["grant_type"], sent["client_secret"], sent["as_json"]) == (
        "client_credentials",
        SECRET,
        "False",
    )


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("1e999", "finite number of seconds above 0"),
        ("-5", "finite number of seconds above 0"),
        ("0", "finite number of seconds above 0"),
        ('"NaN"', "finite number of seconds above 0"),
        ("1e300", "too far in the future"),
        ('"soon"', "expected a number of seconds"),
        ("true", "expected a number of seconds"),
        ("null", "expected a number of seconds"),
        ("[3600]", "expected a number of seconds"),
    ],
)
async def test_unusable_expires_in_is_a_clear_auth_error(
    clock: FakeClock, raw: str, why: str
) -> None:
    """Infinite, non-positive, absurd or non-numeric expires_in: an AuthError naming the field."""
    provider, _ = _provider(f'{{"access_token": "ims-access-value", "expires_in": {raw}}}', clock)
    with pytest.raises(AuthError) as caught:
        await provider.obtain(None)
    message = str(caught.value)
    assert "has an invalid expires_in: " in message and why in message and "\n" not in message


@pytest.mark.parametrize("echoed", [SECRET, "ims-access-value"])
async def test_an_answer_echoing_the_secret_or_the_token_shows_its_fingerprint(
    clock: FakeClock, echoed: str
) -> None:
    """IMS echoes what it received (the client secret) or what it minted (the access token) in
    the very field syncd quotes: the message carries the fingerprint, never the value."""
    provider, _ = _provider(
        json.dumps({"access_token": "ims-access-value", "expires_in": echoed}), clock
    )
    with pytest.raises(AuthError) as caught:
        await provider.obtain(None)
    message = str(caught.value)
    assert f"has an invalid expires_in: '{fingerprint(echoed)}'" in message, message
    assert echoed not in message


async def test_a_refusal_echoing_the_secret_shows_its_fingerprint(clock: FakeClock) -> None:
    """A 400 whose description quotes the form it received names the secret by fingerprint."""
    settings = ImsAuthSettings(client_id="cid", client_secret=SECRET, org_id="ORG@AdobeOrg")  # type: ignore[arg-type]
    body = {"error": "invalid_client", "error_description": f"bad client_secret={SECRET}"}
    endpoint = RawEndpoint(json.dumps(body), status=400)
    with pytest.raises(AuthError) as caught:
        await ImsTokenProvider(settings, endpoint, clock).obtain(None)
    assert str(caught.value).endswith(f"invalid_client: bad client_secret={fingerprint(SECRET)}")

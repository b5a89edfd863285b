"""A Magento integration's credentials checked as a store without the Adobe gateway checks them.

Bearer: Magento 2.4.4+ accepts the integration's access token as a standalone bearer token when
"Allow OAuth Access Tokens to be used as standalone Bearer tokens" is on; any other token leaves
the request a guest's, which the ACL refuses with the 401 "The consumer isn't authorized ...".

OAuth 1.0a: the checks run in the order of Magento's `Framework\\Oauth\\Oauth::
validateAccessTokenRequest`, with its messages and statuses (an `OauthInputException` is a 400, an
`Oauth\\Exception` an authentication failure, 401). Like Magento, the nonce is stored before the
signature is checked, a timestamp more than 600 s ahead is refused, and an old one is not: a replay
is stopped by the nonce alone. The signature is recomputed with oauthlib from the request as it
arrived (method, URL, raw query string, Authorization header parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature, utils

from syncd.clock import Clock
from syncd.emulator.config import AdobeConfig
from syncd.emulator.responses import json_response

UNAUTHORIZED = {
    "message": "The consumer isn't authorized to access %resources.",
    "parameters": {"resources": "Magento_Catalog::products"},
}
# Magento\Integration\Model\Oauth\Nonce\Generator::TIME_DEVIATION
TIME_DEVIATION = 600
_CONSUMER_ID = 1
_LENGTH = 32  # Magento's LENGTH_CONSUMER_KEY and LENGTH_TOKEN
_REQUIRED = (
    "oauth_consumer_key",
    "oauth_signature",
    "oauth_signature_method",
    "oauth_nonce",
    "oauth_timestamp",
    "oauth_token",
)
_VERIFY = {
    "HMAC-SHA256": signature.verify_hmac_sha256,
    "HMAC-SHA1": signature.verify_hmac_sha1,
}


@dataclass(slots=True)
class IntegrationAuth:
    """Checks integration credentials; `signed` counts OAuth requests whose signature held."""

    config: AdobeConfig
    clock: Clock
    nonces: set[str] = field(default_factory=set)
    signed: int = 0
    revoked: bool = False

    def bearer(self, value: str) -> web.Response | None:
        """None if `value` is the integration's access token and Magento takes it as a bearer."""
        cfg = self.config
        if cfg.integration_bearer and not self.revoked and value == cfg.integration_access_token:
            return None
        return json_response(401, UNAUTHORIZED)

    def oauth(self, request: web.Request, header: str) -> web.Response | None:
        """None if `request` carries a valid OAuth 1.0a signature of the integration."""
        try:
            # The header's values are percent-encoded (RFC 5849 3.5.1); oauthlib leaves them so.
            params = {
                utils.unescape(k): utils.unescape(v)
                for k, v in utils.parse_authorization_header(header)
            }
        except ValueError:
            params = {}
        params = {k: v for k, v in params.items() if k.startswith("oauth_")}
        if not params:
            return json_response(401, UNAUTHORIZED)  # not an OAuth request: a guest
        version = params.get("oauth_version")
        if version is not None and version != "1.0":
            return _refuse(400, 'The "%1" Oauth version isn\'t supported.', [version])
        missing = [name for name in _REQUIRED if name not in params]
        if missing:
            return _missing(missing)
        if len(params["oauth_token"]) != _LENGTH:
            return _refuse(400, "The token length is invalid. Check the length and try again.")
        method = params["oauth_signature_method"]
        verify = _VERIFY.get(method)
        if verify is None:
            return _refuse(400, "Signature method %1 is not supported", [method])
        cfg = self.config
        key = params["oauth_consumer_key"]
        if len(key) != _LENGTH:
            return _refuse(401, "Consumer key is not the correct length")
        if key != cfg.integration_consumer_key:
            return _refuse(401, "A consumer having the specified key does not exist")
        refused = self._nonce(params["oauth_nonce"], params["oauth_timestamp"])
        if refused is not None:
            return refused
        if params["oauth_token"] != cfg.integration_access_token:
            return _refuse(401, "Specified token does not exist")
        if self.revoked:
            return _refuse(401, "Access token has been revoked")
        if not self._signature_holds(request, header, params["oauth_signature"], verify):
            return _refuse(401, "The signature is invalid. Verify and try again.")
        self.signed += 1
        return None

    def _nonce(self, nonce: str, timestamp: str) -> web.Response | None:
        try:
            stamp = int(timestamp)
        except ValueError:
            stamp = 0  # PHP's (int) of a non-number
        if stamp <= 0 or stamp > self.clock.now().timestamp() + TIME_DEVIATION:
            return _refuse(400, "Incorrect timestamp value in the oauth_timestamp parameter")
        if nonce in self.nonces:
            return _refuse(
                401, "The nonce is already being used by the consumer with ID %1", [_CONSUMER_ID]
            )
        self.nonces.add(nonce)
        return None

    def _signature_holds(self, request: web.Request, header: str, given: str, verify: Any) -> bool:
        try:
            collected = signature.collect_parameters(
                uri_query=request.rel_url.raw_query_string,
                headers={"Authorization": header},
                exclude_oauth_signature=True,
            )
        except ValueError:
            return False  # a query oauthlib cannot decode was not signed as it arrived
        # What oauthlib's own endpoints verify: a Request given the collected parameters and the
        # signature as attributes (its stubs declare neither, nor a plain str method).
        checked: Any = OAuthRequest(str(request.url), cast(Any, request.method))
        checked.params = collected
        checked.signature = given
        cfg = self.config
        return bool(
            verify(checked, cfg.integration_consumer_secret, cfg.integration_access_token_secret)
        )


def _refuse(status: int, message: str, parameters: list[Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if parameters:
        body["parameters"] = parameters
    return json_response(status, body)


def _missing(names: list[str]) -> web.Response:
    """Magento's aggregated `OauthInputException`: one error as the message, several listed."""
    errors = [
        {
            "message": '"%fieldName" is required. Enter and try again.',
            "parameters": {"fieldName": n},
        }
        for n in names
    ]
    if len(errors) == 1:
        return json_response(400, errors[0])
    return json_response(
        400, {"message": "One or more input exceptions have occurred.", "errors": errors}
    )

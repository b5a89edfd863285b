"""What every settings model shares: strictness, the names sources may have, loopback checks."""

from __future__ import annotations

import ipaddress
import re

from pydantic import (
    BaseModel,
    ConfigDict,
)

IMS_TOKEN_URL = "https://ims-na1.adobelogin.com/ims/token/v3"  # noqa: S105 (a URL)


DEFAULT_IMS_SCOPES = (
    "openid",
    "AdobeID",
    "email",
    "profile",
    "additional_info.roles",
    "additional_info.projectedProductContext",
    "commerce.accs",
)


ACCS_SCOPE = "commerce.accs"


SECRET_FIELDS = (
    "client_secret",
    "app_secret",
    "static_token",
    "consumer_secret",
    "access_token",
    "access_token_secret",
)


SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class StrictModel(BaseModel):
    """Frozen, and an unknown key is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Settings (pydantic-settings): the models in `base`, `sources` and `settings`, the loader in `loading`."""

from syncd.config.base import (
    ACCS_SCOPE,
    DEFAULT_IMS_SCOPES,
    IMS_TOKEN_URL,
    SECRET_FIELDS,
    is_loopback,
)
from syncd.config.loading import load_settings, secret_env_name
from syncd.config.settings import (
    ExactSettings,
    HealthSettings,
    HttpSettings,
    Settings,
    StoreSettings,
)
from syncd.config.sources import (
    AdobeCommerceSourceSettings,
    AmeriCommerceAuthSettings,
    AmeriCommerceSourceSettings,
    ImsAuthSettings,
    IntegrationBearerAuthSettings,
    IntegrationOAuth1AuthSettings,
    SourceSettings,
)

__all__ = [
    "ACCS_SCOPE",
    "DEFAULT_IMS_SCOPES",
    "IMS_TOKEN_URL",
    "SECRET_FIELDS",
    "AdobeCommerceSourceSettings",
    "AmeriCommerceAuthSettings",
    "AmeriCommerceSourceSettings",
    "ExactSettings",
    "HealthSettings",
    "HttpSettings",
    "ImsAuthSettings",
    "IntegrationBearerAuthSettings",
    "IntegrationOAuth1AuthSettings",
    "Settings",
    "SourceSettings",
    "StoreSettings",
    "is_loopback",
    "load_settings",
    "secret_env_name",
]

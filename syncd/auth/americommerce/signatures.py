"""AmeriCommerce request signatures: the hex SHA-256 of a concatenation that starts with the app secret.

One pure function per signature the two editions of the docs define. The caller picks the one its
`auth_scheme` (and, for the legacy desktop exchange, its `desktop_signature` option) calls for; no
function here guesses.
"""

from __future__ import annotations

import hashlib


def _digest(*parts: str) -> str:
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def web_exchange_signature(
    secret: str, code: str, app_id: str, scope: str, redirect_url: str
) -> str:
    """Web flow, both editions: `SHA256(secret + code + app_id + scope + lower(redirect_url))`.

    `redirect_url` must be spelled exactly as it was sent to `/api/oauth`; only then is it lowercased.
    """
    return _digest(secret, code, app_id, scope, redirect_url.lower())


def desktop_login_signature(
    secret: str, username: str, user_key: str, app_id: str, scope: str, redirect_url: str
) -> str:
    """Legacy desktop login: `SHA256(secret + username + user_key + app_id + scope + redirect_url)`."""
    return _digest(secret, username, user_key, app_id, scope, redirect_url)


def desktop_exchange_prose_signature(
    secret: str, code: str, app_id: str, scope: str, redirect_url: str
) -> str:
    """Legacy desktop exchange as step 3's prose reads: `SHA256(secret + code + app_id + scope + redirect_url)`."""
    return _digest(secret, code, app_id, scope, redirect_url)


def desktop_exchange_summary_signature(
    secret: str, username: str, code: str, app_id: str, scope: str, redirect_url: str
) -> str:
    """Legacy desktop exchange as step 3's summary reads: `SHA256(secret + username + code + app_id + scope + redirect_url)`."""
    return _digest(secret, username, code, app_id, scope, redirect_url)


def legacy_refresh_signature(
    secret: str, access_token: str, refresh_token: str, app_id: str
) -> str:
    """Legacy refresh: `SHA256(secret + access_token + refresh_token + app_id)`."""
    return _digest(secret, access_token, refresh_token, app_id)


def current_refresh_signature(secret: str, refresh_token: str, client_id: str) -> str:
    """Current refresh: `SHA256(secret + refresh_token + client_id)`."""
    return _digest(secret, refresh_token, client_id)

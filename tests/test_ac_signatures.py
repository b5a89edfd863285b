"""AmeriCommerce signatures against vectors computed by hand (`printf '%s' ... | sha256sum`).

Each expected digest is a literal; the test also recomputes it from the literal concatenation with
hashlib, so a typo in a vector cannot hide behind the function under test.
"""

from __future__ import annotations

import hashlib

import pytest

from syncd.auth.americommerce.signatures import (
    current_refresh_signature,
    desktop_exchange_prose_signature,
    desktop_exchange_summary_signature,
    desktop_login_signature,
    legacy_refresh_signature,
    web_exchange_signature,
)

SECRET = "shh-app-secret"
APP = "app-17"
SCOPE = "read_catalog"
CODE = "c0de-91"
USER = "Jane.Doe"
KEY = "USER-KEY-5"
REDIRECT = "http://127.0.0.1:8765/CallBack"  # mixed case: only the web exchange lowercases it


def _by_hand(concatenation: bytes, expected: str) -> str:
    assert hashlib.sha256(concatenation).hexdigest() == expected, "the vector itself is wrong"
    return expected


def test_web_exchange_lowercases_the_redirect_url() -> None:
    """Web flow: secret + code + app_id + scope + lower(redirect_url)."""
    expected = _by_hand(
        b"shh-app-secretc0de-91app-17read_cataloghttp://127.0.0.1:8765/callback",
        "6d9a76e48b6f82e60333d49aa555c883ef0e91c85258f7f09c8529f55e88cee1",
    )
    assert web_exchange_signature(SECRET, CODE, APP, SCOPE, REDIRECT) == expected


def test_desktop_login() -> None:
    """Desktop login: secret + username + user key + app_id + scope + redirect_url, as written."""
    expected = _by_hand(
        b"shh-app-secretJane.DoeUSER-KEY-5app-17read_cataloghttp://127.0.0.1:8765/CallBack",
        "bbb86038e8d79b52bead3cd7631f6b067bb9d30ac0911617cbcaacf32c710466",
    )
    assert desktop_login_signature(SECRET, USER, KEY, APP, SCOPE, REDIRECT) == expected


def test_desktop_exchange_as_the_prose_reads() -> None:
    """Desktop exchange, step 3 prose: secret + code + app_id + scope + redirect_url (not lowercased)."""
    expected = _by_hand(
        b"shh-app-secretc0de-91app-17read_cataloghttp://127.0.0.1:8765/CallBack",
        "7b2251c54e1183b206e0ce03e5d0d074bbe256daa9296e58ecfc16d7a21d6c7f",
    )
    assert desktop_exchange_prose_signature(SECRET, CODE, APP, SCOPE, REDIRECT) == expected


def test_desktop_exchange_as_the_summary_reads() -> None:
    """Desktop exchange, step 3 summary: secret + username + code + app_id + scope + redirect_url."""
    expected = _by_hand(
        b"shh-app-secretJane.Doec0de-91app-17read_cataloghttp://127.0.0.1:8765/CallBack",
        "5f2a51cd859661a9ecd14ea34890805762b4dfe47b2302b3b9172973c7dc810a",
    )
    assert desktop_exchange_summary_signature(SECRET, USER, CODE, APP, SCOPE, REDIRECT) == expected


def test_legacy_refresh() -> None:
    """Legacy refresh: secret + access_token + refresh_token + app_id."""
    expected = _by_hand(
        b"shh-app-secretAT-1RT-2app-17",
        "4c2ca6f698f2b0fb152e8c89fe205374396e231be11757a4d1375d5d0bcbab7e",
    )
    assert legacy_refresh_signature(SECRET, "AT-1", "RT-2", APP) == expected


def test_current_refresh() -> None:
    """Current refresh: secret + refresh_token + client_id."""
    expected = _by_hand(
        b"shh-app-secretRT-2app-17",
        "f19ecee198834f5017199363f51230c027fc09d47a477695a3e944ca8a8690b2",
    )
    assert current_refresh_signature(SECRET, "RT-2", APP) == expected


def test_non_ascii_is_hashed_as_utf8() -> None:
    """A username like josé.müller is concatenated and hashed as UTF-8 bytes."""
    expected = _by_hand(
        "shh-app-secretjosé.müllerUSER-KEY-5app-17read_catalogMyDesktopApp".encode(),
        "6ff014bf82d09291702dd1b261cb3acfe1155dcc661ece85b09df30cb4159be2",
    )
    signature = desktop_login_signature(SECRET, "josé.müller", KEY, APP, SCOPE, "MyDesktopApp")
    assert signature == expected


@pytest.mark.parametrize(
    "signature",
    [
        web_exchange_signature(SECRET, CODE, APP, SCOPE, REDIRECT),
        legacy_refresh_signature(SECRET, "AT-1", "RT-2", APP),
        current_refresh_signature(SECRET, "RT-2", APP),
    ],
)
def test_signatures_are_lowercase_hex(signature: str) -> None:
    """The store expects a hex string: 64 lowercase hex digits."""
    assert len(signature) == 64 and set(signature) <= set("0123456789abcdef")


def test_the_two_desktop_readings_differ() -> None:
    """The legacy document's two readings are different signatures: the option matters."""
    prose = desktop_exchange_prose_signature(SECRET, CODE, APP, SCOPE, REDIRECT)
    summary = desktop_exchange_summary_signature(SECRET, USER, CODE, APP, SCOPE, REDIRECT)
    assert prose != summary

"""Frames in an internal error's stack are shortened relative to where the package really is, so
a checkout folder that is itself named `syncd` (as most CI systems name it) changes nothing."""

from __future__ import annotations

import pytest

import syncd.http.client
import syncd.sync
from syncd.sync import _short_path


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("/tmp/x/syncd/syncd/sync.py", "syncd/sync.py"),
        ("/tmp/x/syncd/syncd/http/client.py", "syncd/http/client.py"),
        ("/tmp/x/syncd/tests/test_sync_adobe.py", "test_sync_adobe.py"),
        ("/tmp/x/syncd/.venv/lib/python3.11/site-packages/aiohttp/client.py", "client.py"),
        ("/tmp/x/syncd/syncd-tools/syncd/x.py", "x.py"),
        ("C:\\ci\\syncd\\syncd\\sync.py", "sync.py"),
    ],
)
def test_a_checkout_named_syncd(filename: str, expected: str) -> None:
    """The package lives in /tmp/x/syncd/syncd: only its own files keep a `syncd/` path."""
    assert _short_path(filename, root="/tmp/x/syncd") == expected


def test_the_real_package_files() -> None:
    """Wherever this checkout is (its folder may be named syncd), the package's files are
    `syncd/...` and anything else is a bare file name."""
    assert _short_path(syncd.sync.__file__) == "syncd/sync.py"
    assert _short_path(syncd.http.client.__file__) == "syncd/http/client.py"
    assert _short_path(__file__) == "test_short_path.py"
    assert _short_path(pytest.__file__) == "__init__.py"

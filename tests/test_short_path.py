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
        ("/home/runner/work/syncd/syncd/sync.py", "syncd/sync.py"),
        ("/home/runner/work/syncd/syncd/http/client.py", "syncd/http/client.py"),
        ("/home/runner/work/syncd/tests/test_sync_adobe.py", "test_sync_adobe.py"),
        (
            "/home/runner/work/syncd/.venv/lib/python3.11/site-packages/aiohttp/client.py",
            "client.py",
        ),
        ("/home/runner/work/syncd/syncd-tools/syncd/x.py", "x.py"),
        ("C:\\ci\\syncd\\syncd\\sync.py", "sync.py"),
    ],
)
def test_a_checkout_named_syncd(filename: str, expected: str) -> None:
    """The package lives in /home/runner/work/syncd/syncd (GitHub Actions): only its own files keep a `syncd/` path."""
    assert _short_path(filename, root="/home/runner/work/syncd") == expected


def test_the_real_package_files() -> None:
    """Wherever this checkout is (its folder may be named syncd), the package's files are
    `syncd/...` and anything else is a bare file name."""
    assert _short_path(syncd.sync.__file__) == "syncd/sync.py"
    assert _short_path(syncd.http.client.__file__) == "syncd/http/client.py"
    assert _short_path(__file__) == "test_short_path.py"
    assert _short_path(pytest.__file__) == "__init__.py"

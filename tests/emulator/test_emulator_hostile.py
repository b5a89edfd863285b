"""Hostile faults: a redirect to another origin, a runaway body, an absurd total_count, a JSON
nesting bomb, and a Retry-After that is digits only to `str.isdigit`."""

from __future__ import annotations

import json

import aiohttp
import pytest

from syncd.emulator import AmeriCommerceConfig, Emulator, Fault
from tests.emulator.emulator_helpers import StartEmulator

TOKEN = "console-token"
ELSEWHERE = "http://127.0.0.1:9"


@pytest.fixture
async def emu(start: StartEmulator) -> Emulator:
    """An AmeriCommerce store with an admin-console token (the Adobe side needs no token here:
    faults answer before the handler checks it)."""
    return await start(
        americommerce=AmeriCommerceConfig(products=30, static_tokens=(TOKEN,), call_limit=10_000)
    )


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"X-AC-Auth-Token": TOKEN, "Cache-Control": "no-cache"}
    async with session.get(url, headers=headers, allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.read()


@pytest.mark.parametrize(("target", "path"), [("api", "/api/v1/products"), ("token", "/api/oauth")])
async def test_redirect_points_at_the_other_origin_with_the_same_path(
    emu: Emulator, session: aiohttp.ClientSession, target: str, path: str
) -> None:
    """The Location is the configured origin plus the request's own path and query."""
    emu.americommerce.faults.add(Fault("redirect", target=target, status=307, location=ELSEWHERE))  # type: ignore[arg-type]
    status, headers, _ = await get(session, f"{emu.url}{path}?count=5")
    assert (status, headers["Location"]) == (307, f"{ELSEWHERE}{path}?count=5")
    assert (await get(session, f"{emu.url}/api/v1/products?count=5"))[0] == 200


def test_a_redirect_needs_a_3xx_and_a_location() -> None:
    with pytest.raises(ValueError, match="3xx status and the location"):
        Fault("redirect", status=200, location=ELSEWHERE)
    with pytest.raises(ValueError, match="3xx status and the location"):
        Fault("redirect", status=302)


async def test_oversized_streams_the_size_asked_without_a_length(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    """A 3 MiB JSON object, chunked: no Content-Length tells the client its size."""
    emu.americommerce.faults.add(Fault("oversized", size=3 * 1024 * 1024))
    status, headers, body = await get(session, f"{emu.url}/api/v1/products")
    assert status == 200 and "Content-Length" not in headers
    assert len(body) == 3 * 1024 * 1024 and json.loads(body)["total_count"] == 0


async def test_huge_total_keeps_the_page_and_replaces_the_count(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    emu.americommerce.faults.add(Fault("huge_total", total=10**9))
    status, _, body = await get(session, f"{emu.url}/api/v1/products?count=5")
    data = json.loads(body)
    assert status == 200 and data["total_count"] == 10**9 and len(data["products"]) == 5


async def test_nested_answers_a_bomb_of_the_depth_asked(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    emu.americommerce.faults.add(Fault("nested", depth=5000))
    status, _, body = await get(session, f"{emu.url}/api/v1/products")
    assert status == 200 and body == b"[" * 5000 + b"]" * 5000


async def test_a_status_fault_sends_the_retry_after_it_is_given(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    emu.americommerce.faults.add(Fault("status", status=429, retry_after="²"))
    status, headers, _ = await get(session, f"{emu.url}/api/v1/products")
    assert (status, headers["Retry-After"]) == (429, "²")

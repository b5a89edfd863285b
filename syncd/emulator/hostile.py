"""Hostile answers a broken proxy or store gives: a redirect elsewhere, a runaway body, an absurd
`total_count`, a JSON nesting bomb. Each is one `Fault` kind (see `emulator.config.Fault`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from syncd.emulator.config import Fault
from syncd.emulator.responses import JSON_TYPE

HOSTILE_KINDS = frozenset({"redirect", "oversized", "huge_total", "nested"})

_CHUNK = 256 * 1024


async def hostile_response(
    fault: Fault,
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.Response]],
) -> web.StreamResponse:
    """The answer `fault` (one of `HOSTILE_KINDS`) gives to `request`."""
    if fault.kind == "redirect":
        target = fault.location.rstrip("/") + request.path_qs
        return web.Response(status=fault.status, headers={"Location": target})
    if fault.kind == "huge_total":
        return await _with_total(await handler(request), fault.total)
    if fault.kind == "nested":
        bomb = b"[" * fault.depth + b"]" * fault.depth
        return web.Response(status=200, body=bomb, headers={"Content-Type": JSON_TYPE})
    return await _oversized(request, fault.size)


async def _with_total(answer: web.Response, total: int) -> web.Response:
    """`answer` with `total_count` replaced (an error or a body that is not an object is kept)."""
    body = answer.body if isinstance(answer.body, bytes) else b""
    try:
        data = json.loads(body)
    except ValueError:
        return answer
    if answer.status != 200 or not isinstance(data, dict):
        return answer
    data["total_count"] = total
    return web.Response(
        status=200, body=json.dumps(data).encode(), headers={"Content-Type": JSON_TYPE}
    )


async def _oversized(request: web.Request, size: int) -> web.StreamResponse:
    """A JSON object of `size` bytes, written in chunks and without a Content-Length, so a
    client learns its size only by reading it (the emulator never holds it whole)."""
    response = web.StreamResponse(status=200, headers={"Content-Type": JSON_TYPE})
    response.enable_chunked_encoding()
    await response.prepare(request)
    head, tail = b'{"total_count":0,"items":[],"padding":"', b'"}'
    left = max(0, size - len(head) - len(tail))
    await response.write(head)
    try:
        while left > 0:
            n = min(_CHUNK, left)
            await response.write(b"x" * n)
            left -= n
        await response.write(tail)
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped reading: what a capped reader does
    return response

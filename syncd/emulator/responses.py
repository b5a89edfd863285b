"""Response builders shared by both platforms: compact JSON, form bodies, proxy error pages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

JSON_TYPE = "application/json; charset=utf-8"
FORM_TYPE = "application/x-www-form-urlencoded"

_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


def json_response(
    status: int,
    body: bytes | Mapping[str, Any] | list[Any],
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON answer; `body` may already be serialized."""
    raw = body if isinstance(body, bytes) else dumps(body)
    all_headers = {"Content-Type": JSON_TYPE}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=raw, headers=all_headers)


def form_response(
    status: int, fields: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    """A form-encoded answer (AmeriCommerce answers in the request's content type)."""
    flat = {k: "" if v is None else str(v) for k, v in fields.items()}
    all_headers = {"Content-Type": FORM_TYPE}
    if headers:
        all_headers.update(headers)
    return web.Response(status=status, body=urlencode(flat).encode(), headers=all_headers)


def html_error_page(status: int) -> web.Response:
    """What a proxy in front of the application serves when the upstream fails."""
    if status < 500:
        status = 502
    title = f"{status} {_REASONS.get(status, 'Bad Gateway')}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(
        status=status, body=page.encode(), headers={"Content-Type": "text/html; charset=utf-8"}
    )


def garbage_response() -> web.Response:
    """200 OK whose body claims to be JSON and is not."""
    body = b"OK\r\n<<upstream buffer overflow>> ]}{ near line 1 col 7"
    return web.Response(status=200, body=body, headers={"Content-Type": JSON_TYPE})

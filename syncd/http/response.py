"""A decoded HTTP answer, as the client hands it to sources and throttles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Response:
    """A decoded answer: status, headers and body (parsed JSON where JSON was expected)."""

    status: int
    headers: Mapping[str, str]
    content_type: str
    body: bytes
    data: Any = None


def fill_placeholders(message: str, parameters: object) -> str:
    """Magento's error `message` as its Phrase renders it: `%name` (a dict of `parameters`) or
    `%1`, `%2` (a list) replaced by their values; longest names first, so `%10` is not `%1`."""
    if isinstance(parameters, list):
        named = {str(n): v for n, v in enumerate(parameters, start=1)}
    elif isinstance(parameters, dict):
        named = {str(k): v for k, v in parameters.items()}
    else:
        return message
    for name in sorted(named, key=len, reverse=True):
        message = message.replace(f"%{name}", str(named[name]))
    return message


ERROR_TEXT_KEYS = ("message", "error_description", "error", "details")
"""Where the platforms put their error text: Magento `message`, IMS `error_description` and
`error`, AmeriCommerce `details`."""


def error_text(data: object) -> str | None:
    """The platform's own error text in a decoded error body, placeholders filled, on one line;
    None if the body has none."""
    if not isinstance(data, dict):
        return None
    for key in ERROR_TEXT_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value:
            return " ".join(fill_placeholders(value, data.get("parameters")).split())
    return None

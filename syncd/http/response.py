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

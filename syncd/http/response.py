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

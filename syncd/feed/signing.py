"""The `Syncd-Signature` header: HMAC-SHA256 of `"<unix time>.<body>"`, the way Stripe signs.

    Syncd-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

A receiver recomputes the HMAC over the raw body with the shared secret, compares it in constant
time, and refuses a timestamp too far from its own clock (a replayed request). `verify` does all
three; docs/CHANGES.md has the same check in ten lines of plain Python.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Syncd-Signature"
TOLERANCE = 300.0
"""Seconds a receiver accepts between the signed timestamp and its own clock."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for `body` sent at unix time `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = TOLERANCE) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance` of `now`."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    # Any v1 may match: a sender rolling its secret can sign with both.
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))

"""HTTP: the shared client pool, per-source clients, retry policy and rate-limit handling."""

from syncd.http.client import Response, SourceAuth, SourceClient
from syncd.http.pool import ClientPool
from syncd.http.retry import RetryPolicy, parse_retry_after
from syncd.http.stats import RequestStats

__all__ = [
    "ClientPool",
    "RequestStats",
    "Response",
    "RetryPolicy",
    "SourceAuth",
    "SourceClient",
    "parse_retry_after",
]

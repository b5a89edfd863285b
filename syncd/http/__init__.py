"""HTTP: the shared client pool, per-source clients, retry policy and rate-limit handling."""

from syncd.http.client import SourceAuth, SourceClient
from syncd.http.pool import ClientPool
from syncd.http.response import Response
from syncd.http.retry import RetryPolicy, parse_retry_after
from syncd.http.stats import RequestStats
from syncd.http.throttle import RateThrottle, Throttle

__all__ = [
    "ClientPool",
    "RateThrottle",
    "RequestStats",
    "Response",
    "RetryPolicy",
    "SourceAuth",
    "SourceClient",
    "Throttle",
    "parse_retry_after",
]

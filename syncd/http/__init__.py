"""HTTP: the shared client pool, per-source clients, retry policy and rate-limit handling."""

from syncd.http.adaptive import AdaptiveRate, RateTuning
from syncd.http.client import SourceAuth, SourceClient
from syncd.http.pool import ClientPool
from syncd.http.response import Response, error_text
from syncd.http.retry import RetryBudget, RetryPolicy, parse_retry_after
from syncd.http.stats import RequestStats
from syncd.http.throttle import AdaptiveThrottle, RateThrottle, Throttle

__all__ = [
    "AdaptiveRate",
    "AdaptiveThrottle",
    "ClientPool",
    "RateThrottle",
    "RateTuning",
    "RequestStats",
    "Response",
    "RetryBudget",
    "RetryPolicy",
    "SourceAuth",
    "SourceClient",
    "Throttle",
    "error_text",
    "parse_retry_after",
]

"""What an emulated platform saw: plain counters plus a bounded log of requests for assertions."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request: what was asked and what was answered (status 0: connection dropped); `at`
    when it was answered and `began` when it arrived (the emulator's monotonic clock)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float
    began: float


@dataclass(slots=True)
class Stats:
    """Counters for one platform; `log` keeps the most recent `log_size` requests."""

    log_size: int = 10_000
    requests: int = 0
    token_requests: int = 0
    rate_limited: int = 0
    expired_token_requests: int = 0
    unauthorized: int = 0
    faults_injected: int = 0
    cache_hits: int = 0
    log: deque[RequestRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.log = deque(maxlen=self.log_size)

    def reset(self) -> None:
        """Zero every counter and empty the log."""
        self.requests = 0
        self.token_requests = 0
        self.rate_limited = 0
        self.expired_token_requests = 0
        self.unauthorized = 0
        self.faults_injected = 0
        self.cache_hits = 0
        self.log.clear()

    def record(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        status: int,
        at: float,
        began: float | None = None,
    ) -> None:
        """Append one request to the log (`began`: when it arrived, if not `at`)."""
        self.log.append(
            RequestRecord(method, path, query, status, at, at if began is None else began)
        )

    def requests_to(self, path: str) -> list[RequestRecord]:
        """Logged requests whose path is `path`."""
        return [r for r in self.log if r.path == path]

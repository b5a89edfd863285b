"""The one exception tree of syncd; third-party errors are translated into it at the layer that sees them.

SyncdError
├── ConfigError            invalid settings (exit code 2)
├── StoreError             the database refused a read or a write
│   └── ChangesExpiredError  a feed cursor fell behind retention: resync with `syncd export`
├── AuthError              a credential was refused or a token could not be obtained
│   └── NeedsReauthError   the stored grant is gone; an operator must run `syncd auth`
├── TransportError         the request did not produce a usable answer
│   ├── RateLimitedError   429 after every allowed retry
│   ├── ServerError        5xx after every allowed retry
│   ├── ResponseError      an answer that is not the JSON we expected (HTML page, truncated body)
│   ├── HttpStatusError    a 4xx refusal that retrying cannot fix
│   └── RetryBudgetExhaustedError  the run spent its retry budget: the API looks unhealthy
└── SourceError            the platform answered, but not in a way a sync can use
"""

from __future__ import annotations


class SyncdError(Exception):
    """Root of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """Settings that cannot be used; `problems` holds one line per bad field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StoreError(SyncdError):
    """The SQLite store failed a read or a write."""


class SourceBusyError(StoreError):
    """Another live process holds a running sync of the same source."""


class LeaseLostError(StoreError):
    """A write of a run was refused by its lease's fence: another replica owns the source now
    (or the lease expired), so this run must stop writing and give the source up."""


class ChangesExpiredError(StoreError):
    """A change-feed reader asked for entries that retention already removed."""


class AuthError(SyncdError):
    """A token could not be obtained or was refused."""

    def __init__(
        self, message: str, *, source: str | None = None, status: int | None = None
    ) -> None:
        self.source = source
        self.status = status
        super().__init__(message)


class NeedsReauthError(AuthError):
    """The refresh grant was rejected: only an operator running `syncd auth` can fix it."""


class TransportError(SyncdError):
    """A request failed to produce a usable answer."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class RateLimitedError(TransportError):
    """The server kept answering 429."""


class ServerError(TransportError):
    """The server kept answering 5xx."""


class ResponseError(TransportError):
    """The body was not the JSON the endpoint documents."""


class HttpStatusError(TransportError):
    """The server refused the request with a 4xx status (other than 401 and 429)."""


class RetryBudgetExhaustedError(TransportError):
    """The run's retries exceeded its budget; it stops instead of adding load to a sick API."""


class SourceError(SyncdError):
    """The platform answered in a way a sync cannot use (e.g. a capped page size)."""

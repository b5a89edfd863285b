"""Retry policy: bounded by attempts and by total time, full-jitter backoff, `Retry-After` parsing."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from syncd.config import HttpSettings


@dataclass(frozen=True, slots=True)
class Attempts:
    """What one request has been through so far: when it started (monotonic seconds), the
    failures retried and the 429s answered to it."""

    started: float
    failures: int = 0
    refusals: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt failed, as the policy needs to know it.

    `jitter` is a uniform draw in [0, 1) that scales a failure's backoff: drawn by the caller so
    that the decision stays a pure function of its inputs.
    """

    rate_limited: bool = False
    retry_after: float | None = None
    budget_left: bool = True  # the run's retry budget allows one more retry after a failure
    jitter: float = 0.0


class Verdict(StrEnum):
    """Why a request is retried or given up."""

    PAUSE = "pause"  # a 429: the whole source pauses, then the request goes again
    BACKOFF = "backoff"  # a failure: this request waits, then goes again
    ATTEMPTS = "attempts"  # gave up: max_attempts failures
    BUDGET = "budget"  # gave up: the run's retry budget is spent
    DEADLINE = "deadline"  # gave up: the wait would end past the request's deadline


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: retry after `delay` (this request) and `pause` (the
    whole source), or give up; `attempts` is the request's state from now on."""

    verdict: Verdict
    attempts: Attempts
    delay: float = 0.0
    pause: float = 0.0

    @property
    def retry(self) -> bool:
        """True if the request goes again."""
        return self.verdict in (Verdict.PAUSE, Verdict.BACKOFF)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long one request may be retried."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    deadline: float = 300.0
    default_retry_after: float = 5.0
    max_retry_after: float = 600.0

    @classmethod
    def from_settings(cls, http: HttpSettings) -> RetryPolicy:
        """The policy the configuration describes."""
        return cls(
            max_attempts=http.max_attempts,
            base=http.backoff_base,
            cap=http.backoff_cap,
            deadline=http.retry_deadline,
            default_retry_after=http.default_retry_after,
            max_retry_after=http.max_retry_after,
        )

    def decide(self, attempts: Attempts, outcome: Outcome, now: float) -> Decision:
        """Retry or give up after a failed attempt, `now` on the monotonic clock.

        A 429 is bounded by the deadline only: it says "later", not "broken". A failure (5xx,
        network fault, unusable body) also counts against `max_attempts` and the run's budget.
        """
        elapsed = now - attempts.started
        if outcome.rate_limited:
            attempts = replace(attempts, refusals=attempts.refusals + 1)
            pause = self.rate_limit_pause(outcome.retry_after, attempts.refusals)
            # The pause is kept on a give-up too: the server asked every request to wait.
            verdict = Verdict.DEADLINE if pause > self.deadline - elapsed else Verdict.PAUSE
            return Decision(verdict, attempts, pause=pause)
        attempts = replace(attempts, failures=attempts.failures + 1)
        if attempts.failures >= self.max_attempts:
            return Decision(Verdict.ATTEMPTS, attempts)
        if not outcome.budget_left:
            return Decision(Verdict.BUDGET, attempts)
        delay = self._ceiling(attempts.failures) * outcome.jitter
        if elapsed + delay > self.deadline:
            return Decision(Verdict.DEADLINE, attempts, delay=delay)
        return Decision(Verdict.BACKOFF, attempts, delay=delay)

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(failures-1))] (AWS architecture blog)."""
        return rng.uniform(0, self._ceiling(failures))

    def _ceiling(self, failures: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, failures - 1))

    def rate_limit_pause(self, retry_after: float | None, in_a_row: int = 1) -> float:
        """The pause after a 429: the server's `Retry-After` if given, capped, else the default.

        A `Retry-After` shorter than `base` (0, or a date already past: "now") is replaced by the
        backoff for the `in_a_row` 429s answered to the same request: taken literally, a store
        that keeps saying "now" would get thousands of requests before the deadline.
        """
        if retry_after is None:
            return self.default_retry_after
        if retry_after >= self.base:
            return min(retry_after, self.max_retry_after)
        return min(self.cap, self.base * 2.0 ** max(0, in_a_row - 1))


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """The retries one run may spend: `minimum`, plus `share` of the requests it has sent.

    Only retries after failures (5xx, timeouts, resets, unusable bodies) count: a 429 is already
    answered by pausing and by a lower rate, which is the opposite of hammering the API.
    """

    share: float = 0.2
    minimum: int = 10

    @classmethod
    def from_settings(cls, http: HttpSettings) -> RetryBudget:
        """The budget the configuration describes."""
        return cls(share=http.retry_budget, minimum=http.retry_budget_min)

    def allows(self, retries: int, requests: int) -> bool:
        """True if one more retry fits, `retries` having been spent over `requests` sent."""
        return retries < self.minimum + self.share * requests

    def describe(self) -> str:
        """The rule in words, for error messages."""
        return f"{self.minimum} + {self.share:.0%} of the requests sent"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    All three HTTP-date forms are accepted: IMF-fixdate, obsolete RFC 850 and asctime.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds = ascii_int(text)
    if seconds is not None:
        return float(seconds)
    if text.isdigit():
        return None  # digits, but not ASCII ones (a superscript two): unreadable, so absent
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # asctime and "-0000" dates carry no zone; every HTTP-date is GMT (RFC 9110 5.6.7).
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, (when - now).total_seconds())
    except OverflowError:
        return None


# More digits than any header value means (10**18 seconds, bytes or calls); also keeps `int()`
# far from CPython's 4300-digit conversion limit, which raises ValueError.
_MAX_DIGITS = 18


def ascii_int(value: str | None) -> int | None:
    """A header's whole number: ASCII digits only (`str.isdigit` also takes superscripts, which
    `int` refuses, and other scripts' digits), surrounding spaces allowed; None otherwise."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)

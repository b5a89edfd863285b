"""The one redaction boundary: every secret the process holds, and the text that must never show one.

A secret is registered with the process's `Redactor` where it comes into existence (config loading,
a token obtained or loaded, a signature computed, an authorisation code received) and every sink
passes its text through the same object: the log processor, the store's free-text columns, the
sync engine's run errors and the CLI's stdout and stderr. Wherever an echoed secret would have
appeared, its fingerprint (`sha256:` + 12 hex) appears instead, so two lines can still be matched.

Lengths. A value of `MIN_LENGTH` (8) characters or more is replaced everywhere it occurs. A shorter
one cannot be handled the same way: it occurs by chance in ordinary words ("test" in "latest"), so
replacing it everywhere garbles every line and, by where the replacements fall, shows what it is;
and its fingerprint protects nothing (every 7-character value can be hashed in minutes). So a value
of `SHORT_LENGTH` (4) to 7 characters is replaced by `[redacted]` only where it stands alone (not
inside a longer run of letters and digits), and a value under 4 characters is not registered: no
credential of the supported platforms is that short, and nothing sensible can be done with one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

MIN_LENGTH = 8
"""Values at least this long are replaced by their fingerprint wherever they occur."""
SHORT_LENGTH = 4
"""Values from this length up to `MIN_LENGTH` are replaced by `REDACTED` where they stand alone."""
REDACTED = "[redacted]"
RECENT_LIMIT = 64
"""Registered tokens and signatures kept (oldest forgotten first; one in use is registered again
each time it is loaded or obtained): a daemon refreshing hourly for years must not scan every text
for thousands of long-dead tokens. Secrets from the configuration are never dropped."""

SENSITIVE_KEYS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "client_secret",
        "app_secret",
        "static_token",
        "password",
        "signature",
        "user_key",
        "authorization",
    }
)
"""Log fields whose value is a secret by its name alone, registered or not: always `REDACTED`."""

_PLAIN = (str, int, float, bool, type(None))


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a secret, safe to log."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def _spellings(secret: str) -> set[str]:
    """`secret` as it may be echoed: as is, URL-encoded (a query or form body), JSON-escaped, repr'd."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    return {form for form in forms if form}


def _cut_off(text: str, form: str, mark: str) -> str:
    """`text` with each cut-off start of `form` (see `Redactor.redact`) replaced by `mark`."""
    head = form[:MIN_LENGTH]
    at = text.find(head)
    while at >= 0:
        end = at + MIN_LENGTH
        while end < len(text) and end - at < len(form) and text[end] == form[end - at]:
            end += 1
        if end == len(text) or not text[end].isalnum():
            text = text[:at] + mark + text[end:]
            end = at + len(mark)
        at = text.find(head, end)
    return text


@dataclass(frozen=True, slots=True)
class _Secret:
    value: str
    mark: str  # its fingerprint
    others: tuple[str, ...]  # its other spellings (URL-encoded, escaped), if any differ

    @property
    def head(self) -> str:
        return self.value[:MIN_LENGTH]


class Redactor:
    """Knows every secret of the process and replaces each in any text; one per process.

    Created at start-up and passed down (the settings carry it): never a module-level global.
    """

    def __init__(self) -> None:
        self._pinned: dict[str, _Secret] = {}  # configured: kept for the process's lifetime
        self._recent: OrderedDict[str, _Secret] = OrderedDict()
        self._short: set[str] = set()
        self._table: list[_Secret] | None = None
        self._short_pattern: re.Pattern[str] | None = None

    def register(self, *secrets: str | None, pin: bool = False) -> None:
        """Redact each of `secrets` from now on (None and values under 4 characters are ignored).

        `pin` keeps it for the process's lifetime (configured secrets); otherwise only the
        `RECENT_LIMIT` most recently registered values are kept (obtained tokens, signatures).
        """
        for secret in secrets:
            if secret is None or len(secret.strip()) < SHORT_LENGTH:
                continue
            if len(secret) < MIN_LENGTH:
                if secret not in self._short:
                    self._short.add(secret)
                    self._short_pattern = None
                continue
            if secret in self._pinned:
                continue
            if secret in self._recent:
                if pin:
                    self._pinned[secret] = self._recent.pop(secret)
                else:
                    self._recent.move_to_end(secret)
                continue
            entry = _Secret(secret, fingerprint(secret), tuple(_spellings(secret) - {secret}))
            if pin:
                self._pinned[secret] = entry
            else:
                self._recent[secret] = entry
                if len(self._recent) > RECENT_LIMIT:
                    self._recent.popitem(last=False)
            self._table = None

    @property
    def count(self) -> int:
        """How many distinct secrets are registered."""
        return len(self._pinned) + len(self._recent) + len(self._short)

    def redact(self, text: str) -> str:
        """`text` with every registered secret replaced (by its fingerprint, or `REDACTED`).

        A cut-off secret (an error body quoted up to N characters) is replaced too: a run of at
        least `MIN_LENGTH` characters that starts like a secret and ends where the text or its
        word ends. One that goes on with other letters or digits is left alone: that is another
        value sharing a prefix (a token with the same JWT header, an id beside its secret).
        """
        if len(text) < SHORT_LENGTH:
            return text
        secrets = self._secrets()
        # Escaped spellings first: escaping only adds characters, so a raw value may lie inside
        # its own escaped spelling (a trailing backslash), never the other way round.
        for secret in secrets:
            for form in secret.others:
                if form in text:
                    text = text.replace(form, secret.mark)
        cut: list[_Secret] = []
        for secret in secrets:
            if secret.head in text:
                text = text.replace(secret.value, secret.mark)
                if secret.head in text:
                    cut.append(secret)
        # Only once every whole spelling is gone: an encoded spelling starts like the raw one.
        for secret in cut:
            text = _cut_off(text, secret.value, secret.mark)
        if self._short:
            text = self._short_forms().sub(REDACTED, text)
        return text

    def redact_all(self, texts: Iterable[str]) -> list[str]:
        """`redact` of each of `texts`."""
        return [self.redact(text) for text in texts]

    def redact_value(self, value: Any) -> Any:
        """`value` with every string in it redacted: strings, containers, and other objects as
        their `repr` (what a log renderer would print) if that would show a secret."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return type(value)(self.redact_value(v) for v in value)
        shown = repr(value)
        cleaned = self.redact(shown)
        return value if cleaned == shown else cleaned

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """The structlog processor: every field of every event, rendered exceptions included."""
        for key in list(event):
            if key in SENSITIVE_KEYS and event[key] is not None:
                event[key] = REDACTED
            else:
                event[key] = self.redact_value(event[key])
        return event

    def _secrets(self) -> list[_Secret]:
        if self._table is None:
            # Longest first: a secret that contains another is replaced whole.
            every = [*self._pinned.values(), *self._recent.values()]
            self._table = sorted(every, key=lambda secret: len(secret.value), reverse=True)
        return self._table

    def _short_forms(self) -> re.Pattern[str]:
        if self._short_pattern is None:
            words = "|".join(re.escape(s) for s in sorted(self._short, key=len, reverse=True))
            self._short_pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{words})(?![A-Za-z0-9])")
        return self._short_pattern

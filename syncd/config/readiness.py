"""What a command needs beyond a valid file: the secrets of the sources it talks to, and for `run`
(and `check-config`, which answers for `run`) at least one source and a database it can write.

Secrets are needed only where they are used: `status`, `runs`, `events` and `healthcheck` read the
store, so the loader leaves a secret nobody set as a `MissingSecret`, and each command asks for
the secrets of the sources it syncs or checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

from syncd.config.settings import Settings
from syncd.config.sources import SourceSettings
from syncd.errors import ConfigError


class MissingSecret(SecretStr):
    """A secret that no variable, file or config key gave: fine to hold, a `ConfigError` to use."""

    def __init__(self, problem: str) -> None:
        super().__init__("")
        self.problem = problem
        """One line: which secret of which source, and where to set it."""

    def get_secret_value(self) -> str:
        """Never a value: the line saying where to set one, as a ConfigError."""
        raise ConfigError([self.problem])

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return "MissingSecret()"


def missing_secrets(source: SourceSettings) -> list[str]:
    """One line per secret `source` needs and was not given."""
    auth = source.auth
    return [
        value.problem
        for name in type(auth).model_fields
        if isinstance(value := getattr(auth, name), MissingSecret)
    ]


def secret_problems(settings: Settings, names: Iterable[str]) -> list[str]:
    """The missing secrets of the sources called `names` (each must be configured)."""
    return [line for name in names for line in missing_secrets(settings.source(name))]


def require_secrets(settings: Settings, names: Iterable[str]) -> None:
    """ConfigError, one line per missing secret, unless the sources `names` have all theirs."""
    problems = secret_problems(settings, names)
    if problems:
        raise ConfigError(problems)


def store_problems(path: Path) -> list[str]:
    """Why the database at `path` could not be opened for writing, if it could not (the store
    creates missing directories, so the nearest existing one must be writable)."""
    shown = repr(str(path))
    try:
        if path.exists():
            if not os.access(path, os.R_OK | os.W_OK):
                return [f"store.path: {shown} is not writable by this user: fix its permissions"]
            return []
        parent = path.absolute().parent
        while not parent.exists():
            parent = parent.parent
    except OSError as exc:
        return [f"store.path: {shown} cannot be checked: {exc.strerror}"]
    if not parent.is_dir():
        return [
            f"store.path: {shown} cannot be created: {str(parent)!r} is a file, not a directory"
        ]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [
            f"store.path: {shown} cannot be created: the directory {str(parent)!r} is not "
            "writable by this user"
        ]
    return []


def run_problems(settings: Settings) -> list[str]:
    """What would stop `syncd run` from starting: no source, an enabled source's missing
    secret, a database that cannot be written. Empty when it can start."""
    problems: list[str] = []
    if not settings.sources:
        problems.append("sources: at least one [[sources]] entry is required")
    problems += secret_problems(settings, (s.name for s in settings.sources if s.enabled))
    problems += store_problems(settings.store.path)
    return problems


def require_runnable(settings: Settings) -> None:
    """ConfigError listing `run_problems`, if there are any."""
    problems = run_problems(settings)
    if problems:
        raise ConfigError(problems)

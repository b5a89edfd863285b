"""Loading settings: a TOML file, overridden by `SYNCD_*` environment variables, with secrets from env or files.

Secrets of a source (e.g. `client_secret`) are looked up, first match wins, in:
  1. the environment variable `SYNCD_SECRET_<SOURCE>_<FIELD>` (source name upper-cased, `-` as `_`);
  2. the file `<dir>/<source>.<field>` in `secrets_dir`, then in systemd's `$CREDENTIALS_DIRECTORY`;
  3. the value written in the TOML file.
Bad settings become one `ConfigError` line per field: its path, its value (never a secret's), and
what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from syncd.config.base import SECRET_FIELDS
from syncd.config.settings import Settings
from syncd.errors import ConfigError


def secret_env_name(source: str, field: str) -> str:
    """The environment variable that carries secret `field` of `source`."""
    return f"SYNCD_SECRET_{re.sub(r'[^A-Za-z0-9]', '_', source).upper()}_{field.upper()}"


def _resolve_secrets(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    dirs = [d for d in (raw.get("secrets_dir"), env.get("SYNCD_SECRETS_DIR")) if d]
    if env.get("CREDENTIALS_DIRECTORY"):
        dirs.append(env["CREDENTIALS_DIRECTORY"])
    for source in raw.get("sources") or []:
        if not isinstance(source, dict) or not isinstance(source.get("name"), str):
            continue
        auth = source.setdefault("auth", {})
        if not isinstance(auth, dict):
            continue
        for field in SECRET_FIELDS:
            value = env.get(secret_env_name(source["name"], field))
            for directory in dirs:
                if value is not None:
                    break
                path = Path(directory) / f"{source['name']}.{field}"
                if path.is_file():
                    value = path.read_text(encoding="utf-8").strip()
            if value is not None:
                auth[field] = value


def _describe(error: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    loc = list(error["loc"])
    # Discriminated unions insert the tag ("adobe_commerce") into the path; it is noise to a user.
    if len(loc) > 2 and loc[0] == "sources" and loc[2] in ("adobe_commerce", "americommerce"):
        del loc[2]
    parts = [f"[{item}]" if isinstance(item, int) else f".{item}" for item in loc]
    path = "".join(parts).lstrip(".") or "config"
    if loc[:1] == ["sources"] and len(loc) > 1 and isinstance(loc[1], int):
        sources = raw.get("sources") or []
        if loc[1] < len(sources) and isinstance(sources[loc[1]], dict):
            name = sources[loc[1]].get("name")
            if isinstance(name, str):
                path = path.replace(f"sources[{loc[1]}]", f"sources[{loc[1]}] ({name})", 1)
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    secret = any(str(item) in SECRET_FIELDS for item in loc)
    if error["type"] == "missing":
        return f"{path}: is required"
    if error["type"] == "extra_forbidden":
        return f"{path}: is not a known setting (see config/syncd.example.toml)"
    if error["type"] == "union_tag_invalid":
        ctx = error.get("ctx") or {}
        return f"{path}.kind: {ctx.get('tag')!r} is invalid: expected one of {ctx.get('expected_tags')}"
    if not secret and isinstance(value, str | int | float | bool) and not isinstance(value, dict):
        return f"{path}: {value!r} is invalid: {message}"
    return f"{path}: {message}"


def load_settings(path: Path | None) -> Settings:
    """Read the TOML file at `path` (or `$SYNCD_CONFIG`), apply env overrides and secrets; ConfigError if bad."""
    env = os.environ
    if path is None and env.get("SYNCD_CONFIG"):
        path = Path(env["SYNCD_CONFIG"])
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"config file {str(path)!r} does not exist"]) from None
        except OSError as exc:
            raise ConfigError(
                [f"config file {str(path)!r} cannot be read: {exc.strerror}"]
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"config file {str(path)!r} is not valid TOML: {exc}"]) from None
    _resolve_secrets(raw, env)
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigError([_describe(e, raw) for e in exc.errors()]) from None

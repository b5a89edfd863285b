"""Loading settings: a TOML file, overridden by `SYNCD_*` environment variables, with secrets from env or files.

Secrets of a source (e.g. `client_secret`) are looked up, first match wins, in:
  1. the environment variable `SYNCD_SECRET_<SOURCE>_<FIELD>` (source name upper-cased, `-` as `_`);
  2. the file `<dir>/<source>.<field>` in `secrets_dir`, then in systemd's `$CREDENTIALS_DIRECTORY`;
  3. the value written in the TOML file.
A webhook's `secret` the same way: `SYNCD_SECRET_WEBHOOK_<NAME>_SECRET`, then `webhook.<name>.secret`.
A secret variable or file that is set but empty is refused rather than skipped: it is almost always
an unset `${VAR}` interpolated by a shell or compose file, and falling through to another value would
hide that. One `[[sources]]` entry's key can be overridden by index with
`SYNCD_SOURCES__<index>__<KEY>` (nested with `__`); `SYNCD_SOURCES` as a JSON list replaces them all.
Bad settings become one `ConfigError` line per field: its path, its value (never a secret's), the
environment variable it came from if any, and what was expected.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from syncd.config.base import SECRET_FIELDS, SOURCE_NAME
from syncd.config.settings import Settings
from syncd.errors import ConfigError

ENV_PREFIX = "SYNCD_"
_SOURCES_PREFIX = "SYNCD_SOURCES__"


def secret_env_name(source: str, field: str) -> str:
    """The environment variable that carries secret `field` of `source`."""
    return f"SYNCD_SECRET_{re.sub(r'[^A-Za-z0-9]', '_', source).upper()}_{field.upper()}"


def _read_config(path: Path) -> dict[str, Any]:
    shown = repr(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file {shown} does not exist"]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [f"config file {shown} is not UTF-8 text (line {line}): expected a TOML file"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"config file {shown} cannot be read: {exc.strerror}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {shown} is not valid TOML: {exc}"]) from None


def _secret_dirs(raw: Mapping[str, Any], env: Mapping[str, str]) -> tuple[list[Path], list[str]]:
    """The directories searched for secret files, and a problem line for each that is not one."""
    named = [
        ("secrets_dir", raw.get("secrets_dir")),
        ("SYNCD_SECRETS_DIR", env.get("SYNCD_SECRETS_DIR")),
        ("CREDENTIALS_DIRECTORY", env.get("CREDENTIALS_DIRECTORY")),
    ]
    dirs: list[Path] = []
    problems: list[str] = []
    for name, value in named:
        if not isinstance(value, str) or not value:
            continue  # a non-string secrets_dir is reported by validation
        try:
            is_dir = Path(value).is_dir()
        except OSError as exc:
            problems.append(f"{name}: {value!r} cannot be read: {exc.strerror}")
            continue
        if is_dir:
            dirs.append(Path(value))
        else:
            problems.append(f"{name}: {value!r} is not a directory: expected the secrets directory")
    return dirs, problems


def _read_secret_file(path: Path) -> tuple[str | None, str | None]:
    """(secret, None), (None, None) if there is no such file, or (None, a problem line) that names
    the file but never its content."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        return None, f"secret file {str(path)!r} is not a regular file"
    except UnicodeDecodeError:
        return None, f"secret file {str(path)!r} is not UTF-8 text"
    except OSError as exc:
        return None, f"secret file {str(path)!r} cannot be read: {exc.strerror}"
    if not value:
        return None, f"secret file {str(path)!r} is empty: expected the secret, or remove the file"
    return value, None


def _resolve_secrets(raw: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Put each source's secrets from env or files into `raw`; the problems found, one per line."""
    dirs, problems = _secret_dirs(raw, env)
    for source in raw.get("sources") or []:
        # An invalid name is reported by validation; it must not become a path ("../x") here.
        if not isinstance(source, dict) or not SOURCE_NAME.match(str(source.get("name"))):
            continue
        auth = source.setdefault("auth", {})
        if not isinstance(auth, dict):
            continue
        for field in SECRET_FIELDS:
            variable = secret_env_name(source["name"], field)
            value = env.get(variable)
            if value is not None and not value.strip():
                problems.append(
                    f"{variable}: is set but empty: expected the secret, or unset it to use "
                    "the secrets directory or the config file"
                )
                continue
            for directory in dirs:
                if value is not None:
                    break
                value, problem = _read_secret_file(directory / f"{source['name']}.{field}")
                if problem:
                    problems.append(problem)
                    break
            if value is not None:
                auth[field] = value
    return problems + _resolve_webhook_secrets(raw, env, dirs)


def _resolve_webhook_secrets(
    raw: dict[str, Any], env: Mapping[str, str], dirs: list[Path]
) -> list[str]:
    """Each webhook's `secret` from `SYNCD_SECRET_WEBHOOK_<NAME>_SECRET` or the file
    `webhook.<name>.secret` in the secrets directories, the same way as sources' secrets."""
    problems: list[str] = []
    for hook in raw.get("webhooks") or []:
        if not isinstance(hook, dict) or not SOURCE_NAME.match(str(hook.get("name"))):
            continue
        variable = secret_env_name(f"webhook_{hook['name']}", "secret")
        value = env.get(variable)
        if value is not None and not value.strip():
            problems.append(f"{variable}: is set but empty: expected the webhook's secret")
            continue
        for directory in dirs:
            if value is not None:
                break
            value, problem = _read_secret_file(directory / f"webhook.{hook['name']}.secret")
            if problem:
                problems.append(problem)
                break
        if value is not None:
            hook["secret"] = value
    return problems


def _env_lookup(env: Mapping[str, str]) -> dict[str, str]:
    """Upper-cased `SYNCD_*` names to their real spelling: pydantic-settings ignores case."""
    return {name.upper(): name for name in env if name.upper().startswith(ENV_PREFIX)}


def _check_json_env(env: Mapping[str, str]) -> list[str]:
    """Problems with `SYNCD_<FIELD>` variables that must hold JSON (tables and lists)."""
    names = _env_lookup(env)
    problems = []
    for field, info in Settings.model_fields.items():
        annotation = info.annotation
        structured = get_origin(annotation) is tuple or (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        )
        variable = names.get(f"{ENV_PREFIX}{field.upper()}")
        if not structured or variable is None:
            continue
        try:
            json.loads(env[variable])
        except ValueError as exc:
            # The position only: the value may hold a secret.
            where = exc.pos + 1 if isinstance(exc, json.JSONDecodeError) else "?"
            problems.append(
                f"{variable}: is not valid JSON (at character {where}): expected a JSON "
                f"{'list' if field == 'sources' else 'object'}, or set one key with "
                f"{ENV_PREFIX}{field.upper()}__<KEY>"
            )
    return problems


def _source_overrides(raw: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """Problems with `SYNCD_SOURCES__<index>__<KEY>` variables (index of an existing entry)."""
    sources = raw.get("sources")
    count = len(sources) if isinstance(sources, list) else 0
    problems = []
    for upper, variable in sorted(_env_lookup(env).items()):
        if not upper.startswith(_SOURCES_PREFIX):
            continue
        index, _, key = upper.removeprefix(_SOURCES_PREFIX).partition("__")
        if not index.isdigit() or str(int(index)) != index or not key:
            problems.append(
                f"{variable}: expected SYNCD_SOURCES__<index>__<KEY> with the index of a "
                "[[sources]] entry (0 for the first), or SYNCD_SOURCES as a JSON list"
            )
        elif int(index) >= count:
            problems.append(
                f"{variable}: there is no sources[{index}] ({count} [[sources]] entries in the "
                "config file): an index override changes an existing entry, it cannot add one"
            )
    return problems


def _env_origin(loc: list[Any], env: Mapping[str, str]) -> str | None:
    """The environment variable that set the value at `loc`, or one of its parents."""
    names = _env_lookup(env)
    for end in range(len(loc), 0, -1):
        candidate = ENV_PREFIX + "__".join(str(part).upper() for part in loc[:end])
        if candidate in names:
            return names[candidate]
    return None


def _describe(error: Mapping[str, Any], raw: Mapping[str, Any], env: Mapping[str, str]) -> str:
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
    origin = _env_origin(loc, env)
    if origin is not None:
        path = f"{path} (from {origin})"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    # Anything under `auth` may hold a secret (a whole table given as one string, say).
    secret = any(str(item) in SECRET_FIELDS or item in ("auth", "secret") for item in loc)
    ctx = error.get("ctx") or {}
    if error["type"] == "missing":
        return f"{path}: is required"
    if error["type"] == "extra_forbidden":
        return f"{path}: is not a known setting (see config/syncd.example.toml)"
    if error["type"] == "union_tag_invalid":
        return f"{path}.kind: {ctx.get('tag')!r} is invalid: expected one of {ctx.get('expected_tags')}"
    if error["type"] == "union_tag_not_found":
        return f"{path}.kind: is required: expected one of 'adobe_commerce', 'americommerce'"
    if not secret and isinstance(value, str | int | float | bool) and not isinstance(value, dict):
        return f"{path}: {value!r} is invalid: {message}"
    return f"{path}: {message}"


def _indexed(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with its sources keyed by index, so SYNCD_SOURCES__<i>__* variables merge into them."""
    sources = raw.get("sources")
    if not isinstance(sources, list):
        return raw
    return {**raw, "sources": {str(i): source for i, source in enumerate(sources)}}


def load_settings(path: Path | None) -> Settings:
    """Read the TOML file at `path` (or `$SYNCD_CONFIG`), apply env overrides and secrets; ConfigError if bad."""
    env = os.environ
    if path is None and env.get("SYNCD_CONFIG"):
        path = Path(env["SYNCD_CONFIG"])
    raw = _read_config(path) if path is not None else {}
    problems = _check_json_env(env) + _source_overrides(raw, env) + _resolve_secrets(raw, env)
    if problems:
        raise ConfigError(problems)
    try:
        return Settings(**_indexed(raw))
    except ValidationError as exc:
        raise ConfigError([_describe(e, raw, env) for e in exc.errors()]) from None
    except SettingsError as exc:
        # A value pydantic-settings could not decode; its message names the field, never the value.
        raise ConfigError([f"environment: {exc}"]) from None

"""Loading settings: a TOML file, overridden by `SYNCD_*` environment variables, with secrets from env or files.

Secrets of a source (e.g. `client_secret`) are looked up, first match wins, in:
  1. the environment variable `SYNCD_SECRET_<SOURCE>_<FIELD>` (source name upper-cased, `-` as `_`);
  2. the file `<dir>/<source>.<field>` in `secrets_dir`, then in systemd's `$CREDENTIALS_DIRECTORY`
     (also as `syncd_<source>.<field>`: what `LoadCredential=syncd:<directory>` names each file);
  3. the value written in the TOML file.
A webhook's `secret` the same way: `SYNCD_SECRET_WEBHOOK_<NAME>_SECRET`, then `webhook.<name>.secret`.
A secret variable or file that is set but empty is refused rather than skipped: it is almost always
an unset `${VAR}` interpolated by a shell or compose file, and falling through to another value would
hide that. `$SYNCD_CONFIG_DEFAULTS` names a TOML file whose settings apply where the config file is
silent (the container image's paths and grace live there, so the operator's file always wins). One `[[sources]]` entry's key can be overridden by index with
`SYNCD_SOURCES__<index>__<KEY>` (nested with `__`); `SYNCD_SOURCES` as a JSON list replaces them all.
Bad settings become one `ConfigError` line per field: its path, its value (never a secret's), the
environment variable it came from if any, and what was expected.

A secret found nowhere is not an error here unless asked for (`secrets_of`): the source gets a
`MissingSecret`, which says where to set it when a command needs it (see `readiness`), so
read-only commands run without credentials.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from syncd.config.base import SECRET_FIELDS, SOURCE_NAME
from syncd.config.readiness import MissingSecret, secret_problems
from syncd.config.settings import Settings
from syncd.errors import ConfigError
from syncd.redaction import Redactor

ENV_PREFIX = "SYNCD_"
CREDENTIAL_PREFIX = "syncd_"
"""systemd's `LoadCredential=syncd:/etc/syncd/credentials` loads each file of that directory as
`syncd_<file>`: one unit line for any number of sources."""
_SOURCES_PREFIX = "SYNCD_SOURCES__"
# Stands in for an unset secret while the rest of the source is validated; never kept or sent.
_PLACEHOLDER = "0" * 32


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
                for prefix in ("", CREDENTIAL_PREFIX):
                    file = directory / f"{prefix}{source['name']}.{field}"
                    value, problem = _read_secret_file(file)
                    if problem or value is not None:
                        break
                if problem:
                    problems.append(problem)
                    break
            if value is not None:
                auth[field] = value
    problems += _resolve_store_password(raw, env, dirs)
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


def _secret_variables(env: Mapping[str, str]) -> list[str]:
    """The values of every `SYNCD_SECRET_*` variable, whether a configured source reads it or not."""
    return [value for name, value in env.items() if name.upper().startswith("SYNCD_SECRET_")]


def _raw_secrets(raw: Mapping[str, Any]) -> list[str]:
    """The secret fields' values as written (or resolved from env and files), before validation."""
    sources = raw.get("sources")
    values: list[str] = []
    for source in sources if isinstance(sources, list) else ():
        auth = source.get("auth") if isinstance(source, dict) else None
        if isinstance(auth, dict):
            values.extend(v for k, v in auth.items() if k in SECRET_FIELDS and isinstance(v, str))
    return values


def _resolve_store_password(
    raw: dict[str, Any], env: Mapping[str, str], dirs: list[Path]
) -> list[str]:
    """Put the PostgreSQL password (SYNCD_SECRET_STORE_PASSWORD, or a `store.password` secret file)
    into `raw`; the problems found. libpq's own PGPASSWORD and ~/.pgpass work as well."""
    variable = secret_env_name("store", "password")
    value = env.get(variable)
    if value is not None and not value.strip():
        return [f"{variable}: is set but empty: expected the database password, or unset it"]
    for directory in dirs:
        if value is not None:
            break
        value, problem = _read_secret_file(directory / "store.password")
        if problem:
            return [problem]
    if value is not None and isinstance(store := raw.setdefault("store", {}), dict):
        store["password"] = value
    return []


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


_AUTH_TAGS = ("ims", "bearer", "oauth1")


def _describe(error: Mapping[str, Any], raw: Mapping[str, Any], env: Mapping[str, str]) -> str:
    loc = list(error["loc"])
    # Discriminated unions insert the tag ("adobe_commerce") into the path; it is noise to a user.
    if len(loc) > 2 and loc[0] == "sources" and loc[2] in ("adobe_commerce", "americommerce"):
        del loc[2]
    # So does the tag of an Adobe source's auth table ("oauth1" in sources[0].auth.oauth1.x).
    if len(loc) > 3 and loc[0] == "sources" and loc[2] == "auth" and loc[3] in _AUTH_TAGS:
        del loc[3]
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
    secret = any(str(item) in SECRET_FIELDS or item in ("auth", "secret") for item in loc) or (
        loc[:1] == ["store"] and loc[1:2] in (["url"], ["password"])
    )
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


def _layered(defaults: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` over `defaults`, table by table: a key the config file sets wins, lists are replaced."""
    merged = dict(defaults)
    for key, value in raw.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _layered(below, value)
        else:
            merged[key] = value
    return merged


def _unset_secret(index: int, name: str, field: str) -> MissingSecret:
    return MissingSecret(
        f"sources[{index}] ({name}).auth.{field}: is required: set {secret_env_name(name, field)}, "
        f"a file {name}.{field} in the secrets directory, or auth.{field} in the config file"
    )


def _implied_secrets(raw: Mapping[str, Any]) -> dict[int, list[str]]:
    """Secrets that validation cannot name as missing: an AmeriCommerce source with an app id,
    and neither its secret nor a static token, lacks the app secret."""
    found: dict[int, list[str]] = {}
    sources = raw.get("sources")
    for index, source in enumerate(sources if isinstance(sources, list) else []):
        if not isinstance(source, dict) or source.get("kind") != "americommerce":
            continue
        auth = source.get("auth")
        if not isinstance(auth, dict):
            continue
        has_id = bool(auth.get("app_id") or auth.get("client_id"))
        if has_id and "static_token" not in auth and "app_secret" not in auth:
            found[index] = ["app_secret"]
    return found


def _missing_in(errors: list[Any], raw: Mapping[str, Any]) -> dict[int, list[str]]:
    """The secrets that `errors` say are missing, by index of a `[[sources]]` entry in `raw`."""
    sources = raw.get("sources")
    count = len(sources) if isinstance(sources, list) else 0
    found: dict[int, list[str]] = {}
    for error in errors:
        loc = list(error["loc"])
        if (
            error["type"] == "missing"
            and len(loc) > 3
            and loc[0] == "sources"
            and isinstance(loc[1], int)
            and loc[1] < count
            and "auth" in loc
            and loc[-1] in SECRET_FIELDS
        ):
            found.setdefault(loc[1], []).append(str(loc[-1]))
    return found


def _with_missing(settings: Settings, missing: Mapping[int, list[str]]) -> Settings:
    """`settings` with each placeholder named in `missing` replaced by a `MissingSecret`."""
    sources = list(settings.sources)
    for index, fields in missing.items():
        source = sources[index]
        unset = {field: _unset_secret(index, source.name, field) for field in fields}
        auth = source.auth.model_copy(update=unset)
        sources[index] = source.model_copy(update={"auth": auth})
    return settings.model_copy(update={"sources": tuple(sources)})


def load_settings(
    path: Path | None,
    redactor: Redactor | None = None,
    *,
    secrets_of: Literal["all"] | tuple[str, ...] = "all",
) -> Settings:
    """Read the TOML file at `path` (or `$SYNCD_CONFIG`), apply env overrides and secrets; ConfigError if bad.

    `secrets_of`: the sources whose secrets must all be set ("all": every source); any other
    source's unset secret is a `MissingSecret`. Every secret found is registered with `redactor`
    (which the settings then carry) before anything is validated, so that not even a config
    error can echo one.
    """
    env = os.environ
    redactor = redactor or Redactor()
    redactor.register(*_secret_variables(env), pin=True)
    if path is None and env.get("SYNCD_CONFIG"):
        path = Path(env["SYNCD_CONFIG"])
    raw = _read_config(path) if path is not None else {}
    if env.get("SYNCD_CONFIG_DEFAULTS"):
        raw = _layered(_read_config(Path(env["SYNCD_CONFIG_DEFAULTS"])), raw)
    problems = _check_json_env(env) + _source_overrides(raw, env) + _resolve_secrets(raw, env)
    redactor.register(*_raw_secrets(raw), pin=True)
    if problems:
        raise ConfigError(problems)
    missing = _implied_secrets(raw)
    for attempt in range(2):
        for index, fields in missing.items():
            for field in fields:
                raw["sources"][index]["auth"][field] = _PLACEHOLDER
        try:
            settings = _with_missing(Settings(**_indexed(raw)), missing)
            break
        except ValidationError as exc:
            errors = exc.errors()
            newly = _missing_in(errors, raw) if attempt == 0 else {}
            if not newly:
                unset = [
                    _unset_secret(i, str(raw["sources"][i].get("name")), field).problem
                    for i, fields in sorted(missing.items())
                    if secrets_of == "all" or str(raw["sources"][i].get("name")) in secrets_of
                    for field in fields
                ]
                raise ConfigError(unset + [_describe(e, raw, env) for e in errors]) from None
            for index, fields in newly.items():
                missing.setdefault(index, []).extend(fields)
        except SettingsError as exc:
            # A value pydantic-settings could not decode; its message names the field, never the value.
            raise ConfigError([f"environment: {exc}"]) from None
    needed = [s.name for s in settings.sources] if secrets_of == "all" else secrets_of
    unset_needed = secret_problems(settings, needed)
    if unset_needed:
        raise ConfigError(unset_needed)
    return settings.use_redactor(redactor)

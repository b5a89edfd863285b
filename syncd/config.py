"""Settings: a TOML file, overridden by `SYNCD_*` environment variables, with secrets from env or files.

Secrets of a source (e.g. `client_secret`) are looked up, first match wins, in:
  1. the environment variable `SYNCD_SECRET_<SOURCE>_<FIELD>` (source name upper-cased, `-` as `_`);
  2. the file `<dir>/<source>.<field>` in `secrets_dir`, then in systemd's `$CREDENTIALS_DIRECTORY`;
  3. the value written in the TOML file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from syncd.errors import ConfigError
from syncd.schedule import IntervalSchedule, Schedule, parse_schedule

IMS_TOKEN_URL = "https://ims-na1.adobelogin.com/ims/token/v3"  # noqa: S105 (a URL)
DEFAULT_IMS_SCOPES = (
    "openid",
    "AdobeID",
    "email",
    "profile",
    "additional_info.roles",
    "additional_info.projectedProductContext",
    "commerce.accs",
)
ACCS_SCOPE = "commerce.accs"
SECRET_FIELDS = ("client_secret", "app_secret", "static_token")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Model):
    """Where the SQLite database lives."""

    path: Path = Path("syncd.db")
    busy_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for a locked database"
    )


class HttpSettings(_Model):
    """Retry and pooling policy shared by every source."""

    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_cap: float = Field(default=30.0, gt=0)
    retry_deadline: float = Field(
        default=300.0, gt=0, description="total seconds one request may retry"
    )
    default_retry_after: float = Field(
        default=5.0, gt=0, description="pause on a 429 without Retry-After"
    )
    max_retry_after: float = Field(default=600.0, gt=0, description="longest Retry-After honoured")
    pool_limit: int = Field(default=100, ge=1, description="connections across all sources")
    adaptive_rate: bool = Field(
        default=True, description="slow a source down after a 429, then recover gradually"
    )
    rate_decrease: float = Field(
        default=0.75, gt=0, lt=1, description="a 429 multiplies the source's rate by this"
    )
    rate_recovery_step: float = Field(
        default=0.05, gt=0, le=1, description="share of the full rate won back per interval"
    )
    rate_recovery_interval: float = Field(
        default=2.0, gt=0, description="seconds without a 429 between two recovery steps"
    )
    rate_floor: float = Field(
        default=0.1, gt=0, description="requests per second a 429 never takes a source below"
    )
    retry_budget: float = Field(
        default=0.2, ge=0, le=1, description="share of a run's requests that may be retries"
    )
    retry_budget_min: int = Field(
        default=10, ge=0, description="retries every run may spend whatever its size"
    )


class HealthSettings(_Model):
    """The optional HTTP listener for /healthz, /readyz and /metrics: off by default, loopback by default."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port")
    allow_remote: bool = Field(
        default=False, description="required to listen on a non-loopback address"
    )

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> HealthSettings:
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address; the endpoints have no "
                "authentication, so set allow_remote = true to listen on it anyway"
            )
        return self


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ImsAuthSettings(_Model):
    """Adobe IMS OAuth Server-to-Server credentials (client_credentials grant)."""

    token_url: AnyHttpUrl = AnyHttpUrl(IMS_TOKEN_URL)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    org_id: str = Field(min_length=1)
    scopes: tuple[str, ...] = DEFAULT_IMS_SCOPES
    refresh_margin: float = Field(
        default=600.0, ge=0, description="refresh this many seconds early"
    )

    @field_validator("scopes")
    @classmethod
    def _needs_accs(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        if ACCS_SCOPE not in scopes:
            raise ValueError(
                f"must include {ACCS_SCOPE!r}, which Adobe Commerce (ACCS) APIs require"
            )
        return scopes


class AmeriCommerceAuthSettings(_Model):
    """AmeriCommerce signature OAuth; `auth_scheme` picks the 2014 (`legacy`) or later (`current`) docs.

    `app_id` and `redirect_url` may also be spelled `client_id` and `redirect_uri` (the current
    edition's names); they are the same settings, so give one spelling of each.
    """

    auth_scheme: Literal["legacy", "current"] = "current"
    app_id: str = Field(
        default="",
        validation_alias=AliasChoices("app_id", "client_id"),
        description="the app (client) id from the admin console",
    )
    app_secret: SecretStr | None = None
    scope: str = Field(default="read_catalog", min_length=1)
    redirect_url: str = Field(
        default="http://127.0.0.1:8765/callback",
        validation_alias=AliasChoices("redirect_url", "redirect_uri"),
        description="sent and signed exactly as written; the web flow listens on it",
    )
    desktop_signature: Literal["prose", "summary"] = "prose"
    body_format: Literal["json", "form"] = "json"
    static_token: SecretStr | None = None
    refresh_margin: float = Field(default=300.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for legacy, current in (("app_id", "client_id"), ("redirect_url", "redirect_uri")):
                if legacy in data and current in data:
                    raise ValueError(
                        f"{legacy} and {current} are two names of one setting: give only one"
                    )
        return data

    @field_validator("redirect_url")
    @classmethod
    def _redirect_shape(cls, value: str) -> str:
        # Kept as a string, never normalised: the store compares and signs the exact spelling.
        if not value or value != value.strip():
            raise ValueError("expected a non-empty value without surrounding spaces")
        return value

    @field_validator("app_id", "scope")
    @classmethod
    def _no_padding(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("expected no surrounding spaces (it is part of every signature)")
        return value

    @model_validator(mode="after")
    def _has_a_credential(self) -> AmeriCommerceAuthSettings:
        if self.static_token is None and (not self.app_id or self.app_secret is None):
            raise ValueError("set either static_token, or app_id and app_secret")
        return self


class _SourceBase(_Model):
    name: str
    base_url: AnyHttpUrl
    page_size: int = Field(default=100, ge=1, le=1000)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    schedule: str = "15m"
    full_schedule: str | None = Field(default=None, description="periodic full runs, e.g. nightly")
    request_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    incremental_overlap: float = Field(
        default=120.0, ge=0, description="seconds re-read before the watermark (skew, same-second)"
    )
    rate_limit: float | None = Field(
        default=None, gt=0, description="requests per second, None = off"
    )
    rate_burst: int | None = Field(default=None, ge=1)
    stale_after: float | str = Field(
        default=3.0,
        description="stale when the last success is older than this many schedule periods, "
        'or than a duration such as "26h"',
    )
    enabled: bool = True
    breaker_threshold: int = Field(
        default=3, ge=1, description="consecutive failed runs before the source is backed off"
    )
    breaker_base_delay: float = Field(
        default=60.0, gt=0, description="seconds of the first backoff; doubles per further failure"
    )
    breaker_max_delay: float = Field(
        default=3600.0, gt=0, description="longest backoff between two runs of a failing source"
    )

    @field_validator("name")
    @classmethod
    def _name_shape(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("expected lowercase letters, digits, '-' or '_' (at most 63)")
        return name

    @field_validator("schedule", "full_schedule")
    @classmethod
    def _schedule_shape(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value

    @field_validator("stale_after")
    @classmethod
    def _stale_after_shape(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            try:
                parsed = parse_schedule(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, IntervalSchedule):
                raise ValueError(
                    'expected a multiple of the schedule period (e.g. 3) or a duration such as "26h"'
                )
        elif value < 1:
            raise ValueError("a multiple of the schedule period must be at least 1")
        return value

    @property
    def parsed_schedule(self) -> Schedule:
        """The schedule as a typed value."""
        return parse_schedule(self.schedule)

    @property
    def parsed_full_schedule(self) -> Schedule | None:
        """The periodic full-run schedule, if any."""
        return parse_schedule(self.full_schedule) if self.full_schedule else None


class AdobeCommerceSourceSettings(_SourceBase):
    """An Adobe Commerce (Magento 2 REST) store behind Adobe IMS."""

    kind: Literal["adobe_commerce"]
    auth: ImsAuthSettings


class AmeriCommerceSourceSettings(_SourceBase):
    """An AmeriCommerce store: `page_size` is the `count` parameter; requests are paced by the
    store's `X-AC-Call-Limit` header."""

    kind: Literal["americommerce"]
    auth: AmeriCommerceAuthSettings
    call_window: float = Field(
        default=10.0, gt=0, le=3600, description="seconds of the store's call-limit window"
    )
    call_limit_reserve: int = Field(
        default=0, ge=0, le=49, description="calls per window left to other apps of the store"
    )
    naive_time_offset: int | None = Field(
        default=None,
        ge=-840,
        le=840,
        description="minutes east of UTC of timestamps the store sends without an offset",
    )


SourceSettings = Annotated[
    AdobeCommerceSourceSettings | AmeriCommerceSourceSettings, Field(discriminator="kind")
]


class Settings(BaseSettings):
    """Everything the daemon needs; build with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    store: StoreSettings = StoreSettings()
    http: HttpSettings = HttpSettings()
    health: HealthSettings = HealthSettings()
    sources: tuple[SourceSettings, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="seconds to drain runs on SIGTERM"
    )
    secrets_dir: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; environment variables must win over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {', '.join(dupes)}")
        return self

    def source(self, name: str) -> SourceSettings:
        """The source called `name`, or ConfigError listing the known ones."""
        for candidate in self.sources:
            if candidate.name == name:
                return candidate
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError([f"source {name!r} is not configured (known: {known})"])


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

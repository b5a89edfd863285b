"""The whole configuration: store, HTTP policy, health listener, sources, logging."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from syncd.config.base import StrictModel, is_loopback
from syncd.config.feed import ChangesSettings, WebhookSettings
from syncd.config.sources import SourceSettings
from syncd.errors import ConfigError
from syncd.redaction import Redactor

HISTORY_RETENTION = 30 * 86400.0


class StoreSettings(StrictModel):
    """Where the database lives: a SQLite file (`path`, the default) or PostgreSQL (`url`)."""

    path: Path = Path("syncd.db")
    busy_timeout: float = Field(
        default=5.0, gt=0, description="seconds to wait for a locked database"
    )
    url: str | None = Field(
        default=None,
        description="postgresql://user@host:port/db; when set, PostgreSQL is used and path ignored",
    )
    password: SecretStr | None = Field(
        default=None, description="PostgreSQL password (from the secret lookup, never the URL)"
    )
    pool_size: int = Field(
        default=4, ge=1, le=100, description="PostgreSQL connections held by one process"
    )
    token_poll_interval: float = Field(
        default=0.5,
        gt=0,
        description="seconds between reads of a token row while another replica refreshes it",
    )
    token_refresh_stale_after: float = Field(
        default=600.0,
        gt=0,
        description="seconds after which a replica's unfinished token refresh counts as dead "
        "(keep it above [http] retry_deadline)",
    )
    history_retention: float = Field(
        default=HISTORY_RETENTION,
        gt=0,
        description="seconds a finished run (sync_runs) and a token event (token_events) are "
        "kept; older ones are pruned, except the newest of each source",
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        # A Unix socket is given as ?host=/run/postgresql, as libpq takes it.
        has_host = bool(parts.hostname) or "host=" in parts.query
        if parts.scheme not in ("postgresql", "postgres") or not has_host:
            raise ValueError("expected postgresql://user@host:5432/database")
        if parts.password is not None:
            # The config file and the environment are not where secrets live (and a URL gets
            # printed); the password comes from SYNCD_SECRET_STORE_PASSWORD or store.password.
            raise ValueError(
                "carries a password: remove it and set SYNCD_SECRET_STORE_PASSWORD "
                "(or the secret file store.password) instead"
            )
        return url

    @field_validator("path")
    @classmethod
    def _not_a_directory(cls, path: Path) -> Path:
        with contextlib.suppress(OSError):  # unreadable parents: the store says so when it opens
            if path.is_dir():
                raise ValueError("is a directory: expected the path of the SQLite database file")
        return path


class HttpSettings(StrictModel):
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
    rate_save_interval: float = Field(
        default=2.0,
        gt=0,
        description="seconds between saves of a source's changed rate and pause (for its next owner)",
    )
    retry_budget: float = Field(
        default=0.2, ge=0, le=1, description="share of a run's requests that may be retries"
    )
    retry_budget_min: int = Field(
        default=10, ge=0, description="retries every run may spend whatever its size"
    )
    max_body_size: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="bytes of one response body read at most; a larger one fails the request",
    )


class HealthSettings(StrictModel):
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


class ReplicaSettings(StrictModel):
    """How a replica shares sources with the others on PostgreSQL (docs/SCALING.md); unused on
    SQLite, where one process schedules everything in memory."""

    lease_seconds: float = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        description="seconds a claimed source stays owned without renewal (renewed every third)",
    )
    poll_interval: float = Field(
        default=2.0, gt=0, le=300.0, description="seconds between polls for due sources"
    )
    max_concurrent_runs: int = Field(
        default=8, ge=1, le=1000, description="sources one replica runs at once (its slots)"
    )


class Settings(BaseSettings):
    """Everything the daemon needs; build with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SYNCD_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    store: StoreSettings = StoreSettings()
    replica: ReplicaSettings = ReplicaSettings()
    http: HttpSettings = HttpSettings()
    health: HealthSettings = HealthSettings()
    sources: tuple[SourceSettings, ...] = ()
    changes: ChangesSettings = ChangesSettings()
    webhooks: tuple[WebhookSettings, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="seconds to drain runs on SIGTERM"
    )
    secrets_dir: Path | None = None
    # The process's one redactor travels with its settings: whatever is built from them (store,
    # token cache, engine, providers, logging, CLI output) registers into and redacts with it.
    _redactor: Redactor = PrivateAttr(default_factory=Redactor)

    def model_post_init(self, context: Any, /) -> None:
        """Every secret of the configuration is registered the moment the settings exist."""
        self._redactor.register(*self.secret_values(), pin=True)

    @property
    def redactor(self) -> Redactor:
        """The redactor every secret of this process is registered with."""
        return self._redactor

    def use_redactor(self, redactor: Redactor) -> Settings:
        """Carry `redactor` (the one logging was configured with) instead, with every secret of
        these settings registered in it; returns self."""
        redactor.register(*self.secret_values(), pin=True)
        self._redactor = redactor
        return self

    def secret_values(self) -> list[str]:
        """The value of every secret field of every source, whatever its auth kind."""
        values: list[str] = _secrets_in(self.store)
        for source in self.sources:
            values.extend(_secrets_in(source))
        return values

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

    @model_validator(mode="before")
    @classmethod
    def _sources_by_index(cls, data: Any) -> Any:
        # The loader keys [[sources]] by index so SYNCD_SOURCES__<i>__<KEY> merges into entry i.
        sources = data.get("sources") if isinstance(data, dict) else None
        if isinstance(sources, dict) and sources and all(str(k).isdigit() for k in sources):
            return {**data, "sources": [sources[k] for k in sorted(sources, key=int)]}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _webhooks_known(self) -> Settings:
        names = [w.name for w in self.webhooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"webhook names must be unique, repeated: {', '.join(dupes)}")
        known = {s.name for s in self.sources}
        for hook in self.webhooks:
            unknown = [s for s in hook.sources if s not in known]
            if unknown:
                raise ValueError(
                    f"webhook {hook.name!r}: source {unknown[0]!r} is not configured "
                    f"(known: {', '.join(sorted(known)) or 'none'})"
                )
        return self

    def source(self, name: str) -> SourceSettings:
        """The source called `name`, or ConfigError listing the known ones."""
        for candidate in self.sources:
            if candidate.name == name:
                return candidate
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError([f"source {name!r} is not configured (known: {known})"])


def _secrets_in(model: BaseModel) -> list[str]:
    """The values of every `SecretStr` in `model` and the models nested in it."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            # A secret a command does not need may be left unset: it has no value to register.
            with contextlib.suppress(ConfigError):
                found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            found.extend(_secrets_in(value))
    return found


class ExactSettings(Settings):
    """Settings that are exactly what the code passes, for commands and tools that build them
    in code (the demo, the benchmark clients): no SYNCD_* variable, `.env` or secret file reaches
    them. `Settings` lets the environment win over its arguments (the TOML file arrives as
    arguments), and a SYNCD_STORE__* variable replaces a store section passed as a model whole,
    which would redirect such a run into an operator's database."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

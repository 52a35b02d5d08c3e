"""Typed settings: environment (``TICKETBRIDGE_`` prefix, ``__`` for nesting) or a secrets dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ticketbridge.adapters.inbound.signatures import standard_secret

DEFAULT_DATABASE_URL = "sqlite:///ticketbridge.db"


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class FreshdeskSettings(BaseModel):
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted webhook secrets (Basic password or Bearer token), comma-separated.",
    )
    api_url: str | None = None
    api_key: SecretStr | None = None
    calls_per_minute: int = Field(default=200, ge=1, description="The account's API budget.")
    reread: bool = Field(
        default=True, description="Re-read the ticket before a page, bridge, reassign or close."
    )

    _split = field_validator("webhook_secrets", mode="before")(_split_commas)


class ZendeskSettings(BaseModel):
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted webhook signing secrets, comma-separated; several for rotation.",
    )
    api_url: str | None = Field(default=None, description="e.g. https://acme.zendesk.com")
    api_email: str | None = Field(default=None, description="The agent the API token belongs to.")
    api_token: SecretStr | None = None
    calls_per_minute: int = Field(default=200, ge=1, description="The account's API budget.")
    reread: bool = Field(
        default=True, description="Re-read the ticket before a page, bridge, reassign or close."
    )

    _split = field_validator("webhook_secrets", mode="before")(_split_commas)


class GenericSettings(BaseModel):
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Standard Webhooks secrets (whsec_<base64>), comma-separated.",
    )

    _split = field_validator("webhook_secrets", mode="before")(_split_commas)

    @field_validator("webhook_secrets")
    @classmethod
    def _base64(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            try:
                standard_secret(secret.get_secret_value())
            except ValueError:
                # The message never repeats the secret.
                raise ValueError("each secret must be whsec_<base64> (or base64)") from None
        return value


class VictorOpsSettings(BaseModel):
    rest_url: SecretStr | None = Field(
        default=None, description="REST endpoint URL including API key and routing key (secret)."
    )
    api_url: str = "https://api.victorops.com"
    api_id: SecretStr | None = None
    api_key: SecretStr | None = None
    tier_two_policy: str | None = None
    bridge_url: str | None = None
    bridge_phone: str | None = None
    tier_two_routing_key: SecretStr | None = None

    @field_validator("rest_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL (the REST endpoint URL VictorOps shows)")
        return value


class GitHubSettings(BaseModel):
    token: SecretStr | None = Field(
        default=None, description="A token with Issues read/write on the repository (secret)."
    )
    repository: str | None = Field(default=None, description="owner/name of the issue repository.")
    api_url: str = Field(
        default="https://api.github.com",
        description="GitHub Enterprise Server: https://HOST/api/v3.",
    )
    creations_per_minute: int = Field(default=75, ge=1, le=80)


class StatusPageSettings(BaseModel):
    api_key: SecretStr | None = Field(default=None, description="Statuspage API key (secret).")
    page_id: str | None = None
    api_url: str = "https://api.statuspage.io"
    components: dict[str, str] = Field(
        default_factory=dict,
        description='Component name -> id, as JSON: {"api": "cmp123"}; other names are ids.',
    )
    requests_per_second: float = Field(default=1.0, gt=0, le=10)


class SchedulerSettings(BaseModel):
    batch_size: int = Field(default=500, ge=1, le=10000)
    poll_seconds: float = Field(default=1.0, gt=0)


class DispatchSettings(BaseModel):
    max_attempts: int = Field(default=10, ge=1, le=100)
    backoff_initial: float = Field(default=1.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=64, ge=1, le=1000)
    concurrency_per_target: int = Field(default=8, ge=1, le=256)
    http_timeout: float = Field(default=10.0, gt=0)
    deadline_seconds: float = Field(
        default=30.0,
        gt=0,
        description="The longest one delivery's vendor call may take in all; never more than "
        "0.7 of lease_seconds, so no call outlives its lease.",
    )


class HttpSettings(BaseModel):
    """What ``ticketbridge serve`` allows a client before it has proven anything."""

    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="A request's head (request line and headers) above this is refused 431.",
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="From connection (or request) start to the head's end."
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="From the head's end to the body's end."
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Connections above it are answered 503 and closed."
    )
    unverified_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Bytes of signed webhooks' bodies held before their signature is checked, "
        "over all requests; a body that would exceed it is answered 503.",
    )


class ConsoleSettings(BaseModel):
    """The operator console at ``/ui/`` (on when an admin or viewer token is set)."""

    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs console session cookies (secret); unset, a key derived from the "
        "tokens, so every replica agrees and changing a token signs everyone out.",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="A console sign-in lasts this long."
    )
    sign_ins_per_minute: int = Field(
        default=10, ge=1, description="Sign-in attempts allowed per client address per minute."
    )


class Settings(BaseSettings):
    """Everything ticketbridge reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="TICKETBRIDGE_",
        env_nested_delimiter="__",
        env_ignore_empty=True,  # NAME= (empty) means unset, as most deployment tools write it
        extra="ignore",
        secrets_dir=None,
        secrets_nested_delimiter="__",
    )

    database_url: str = DEFAULT_DATABASE_URL
    policy_file: Path | None = None
    admin_token: SecretStr | None = None
    viewer_token: SecretStr | None = Field(
        default=None, description="Read-only sign-in to the console at /ui/ (secret)."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    migrate_on_start: bool = True
    clock: Literal["auto", "database", "system"] = Field(
        default="auto",
        description="Whose clock times due dates and leases: auto is the database's on "
        "PostgreSQL (one clock for every replica) and this host's on SQLite.",
    )
    stall_seconds: float = Field(
        default=15.0,
        ge=1,
        description="PostgreSQL: a replica idle this long inside a transaction loses it.",
    )
    group_commit_linger_ms: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="How long at most a group commit waits for more webhooks after a group of "
        "several (see GroupCommit): unset is 4 ms on PostgreSQL and 0 (never) on SQLite.",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    freshdesk: FreshdeskSettings = Field(default_factory=FreshdeskSettings)
    zendesk: ZendeskSettings = Field(default_factory=ZendeskSettings)
    generic: GenericSettings = Field(default_factory=GenericSettings)
    victorops: VictorOpsSettings = Field(default_factory=VictorOpsSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    statuspage: StatusPageSettings = Field(default_factory=StatusPageSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secret files may name nested settings too: ticketbridge_victorops__rest_url.
        nested = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, nested

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://", "postgresql+")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read settings; ``/run/secrets`` (or ``TICKETBRIDGE_SECRETS_DIR``) is read when present."""
    secrets_dir = os.environ.get("TICKETBRIDGE_SECRETS_DIR", "/run/secrets")
    if Path(secrets_dir).is_dir():
        return Settings(_secrets_dir=secrets_dir, **overrides)
    return Settings(**overrides)

"""The one Settings class: every setting of the product, read from the environment and `.env`.

Bad values fail at start-up with a message that names the setting (see `load_settings`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Long enough for HS256 (32 bytes), so development tokens raise no key-length warnings; refused in
# production like any default.
DEFAULT_SECRET = "change-me-in-production-development-only"


class SettingsError(RuntimeError):
    """A setting has a bad value; the message names the setting."""


class Settings(BaseSettings):
    """All configuration. Environment variable names are the upper-case field names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    environment: Literal["development", "test", "production"] = "development"
    mangalm_home: Path = Field(default=Path(".mangalm"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    otel_enabled: bool = False
    otel_exporter_otlp_endpoint: str | None = None

    # Abuse limits (moving windows; "N/second|minute|hour").
    rate_limit_per_user: str = "30/minute"
    rate_limit_per_channel: str = "3000/minute"
    max_request_bytes: int = Field(default=64 * 1024, gt=1024)

    # Services. Unset means the embedded default (see DESIGN.md "Where things run").
    database_url: str | None = None
    redis_url: str | None = None
    chroma_url: str | None = None

    # Security.
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    access_token_minutes: int = Field(default=60 * 12, gt=0)
    confirmation_minutes: int = Field(default=10, gt=0)

    # Planner / LLM.
    llm_provider: Literal["none", "openai", "llama-cpp"] = "none"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    llama_model_path: Path | None = None
    llm_timeout_seconds: float = Field(default=20.0, gt=0)
    llm_max_steps: int = Field(default=4, ge=1, le=20)

    # Embeddings: "local:all-MiniLM-L6-v2", "openai:text-embedding-3-small",
    # "sentence-transformers:MODEL".
    embeddings: str = "local:all-MiniLM-L6-v2"

    # Channels.
    public_base_url: str = "http://127.0.0.1:8000"
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_sms_from: str | None = None
    twilio_whatsapp_from: str | None = None
    meta_app_secret: SecretStr | None = None
    meta_verify_token: SecretStr | None = None
    meta_access_token: SecretStr | None = None
    meta_phone_number_id: str | None = None
    meta_template_name: str = "daily_call_list"
    meta_template_language: str = "en"
    # Provider API bases (local test servers in tests) and the Graph API version.
    telegram_api_base_url: str = "https://api.telegram.org"
    meta_graph_base_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v21.0"
    digest_time: str = "08:00"
    digest_timezone: str = "Asia/Kolkata"
    digest_enabled: bool = True
    digest_limit: int = Field(default=10, ge=1, le=50)
    # The sales rollups are rebuilt every night at this time (in DIGEST_TIMEZONE) by the app.
    rollup_refresh_time: str = "02:30"
    rollup_refresh_enabled: bool = True
    # Twilio: the REST API base (a local test server in tests), the approved WhatsApp
    # template (Content SID) for digests outside the 24-hour window, and the voice turn wait.
    twilio_api_base_url: str | None = None
    twilio_whatsapp_digest_content_sid: str | None = None
    voice_answer_wait_seconds: float = Field(default=4.0, gt=0, le=10)
    # Webhook turns each web process runs at once without REDIS_URL. Turns run in threads under
    # the interpreter lock, which the event loop acknowledging webhooks needs as well: four kept
    # the acknowledgements quick at full load and answered as many turns as eight (BENCHMARKS.md).
    turns_per_process: int = Field(default=4, ge=1, le=64)
    voice_language: str = "en-IN"

    # Data.
    default_warehouse: str = "MAIN"
    currency: str = "Rs"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if value.startswith("postgresql+psycopg://"):
            return value
        raise ValueError(
            "must be a PostgreSQL URL (postgresql://user:pass@host:port/dbname); "
            "other databases are not supported"
        )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value.strip()

    @field_validator("chroma_url", "openai_base_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.strip().rstrip("/")

    @field_validator("embeddings")
    @classmethod
    def _check_embeddings(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if kind not in {"local", "openai", "sentence-transformers"} or not name:
            raise ValueError(
                "must be 'local:all-MiniLM-L6-v2', 'openai:MODEL' or 'sentence-transformers:MODEL'"
            )
        return value

    @field_validator("rate_limit_per_user", "rate_limit_per_channel")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError("must look like '30/minute' or '5/second'") from None
        return value

    @field_validator("digest_time", "rollup_refresh_time")
    @classmethod
    def _check_digest_time(cls, value: str) -> str:
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ValueError("must be HH:MM (24-hour clock)")
        return value

    @field_validator("twilio_api_base_url")
    @classmethod
    def _check_twilio_api_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.strip().rstrip("/")

    @field_validator("telegram_api_base_url", "meta_graph_base_url")
    @classmethod
    def _check_provider_base_url(cls, value: str) -> str:
        if not value.strip().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.strip().rstrip("/")

    @field_validator("digest_timezone")
    @classmethod
    def _check_digest_timezone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as Asia/Kolkata") from None
        return value

    @model_validator(mode="after")
    def _twilio_needs_its_secret(self) -> Settings:
        # A Twilio channel without its auth token could not verify a single webhook.
        if self.twilio_account_sid and self.twilio_auth_token is None:
            raise ValueError("TWILIO_AUTH_TOKEN must be set when TWILIO_ACCOUNT_SID is")
        if self.twilio_auth_token is not None and not self.twilio_account_sid:
            raise ValueError("TWILIO_ACCOUNT_SID must be set when TWILIO_AUTH_TOKEN is")
        if (self.twilio_sms_from or self.twilio_whatsapp_from) and not self.twilio_account_sid:
            raise ValueError(
                "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set with TWILIO_SMS_FROM or "
                "TWILIO_WHATSAPP_FROM"
            )
        if (
            self.environment == "production"
            and self.twilio_account_sid
            and self.public_base_url.startswith(("http://127.", "http://localhost"))
        ):
            raise ValueError(
                "PUBLIC_BASE_URL must be the public https:// address Twilio calls in production"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.environment == "production":
            if self.secret_key.get_secret_value() == DEFAULT_SECRET:
                raise ValueError("SECRET_KEY must be set to a real secret in production")
            if len(self.secret_key.get_secret_value()) < 32:
                raise ValueError("SECRET_KEY must be at least 32 characters in production")
        path = self.llama_model_path
        if self.llm_provider == "llama-cpp" and path is not None and not path.exists():
            raise ValueError(f"LLAMA_MODEL_PATH {path} does not exist")
        return self

    @property
    def home(self) -> Path:
        """MANGALM_HOME as an absolute path."""
        return self.mangalm_home.expanduser().resolve()


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        name = loc[0].upper() if loc else "SETTINGS"
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "Invalid setting: " + "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read settings; raise `SettingsError` naming the bad setting(s)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call `get_settings.cache_clear()`)."""
    return load_settings()

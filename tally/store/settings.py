"""The one validated settings class, read from `TALLY_*` environment variables."""

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("tally-data"), description="Holds the SQLite store, DuckDB, uploads and exports.")
    database_url: str = Field("", description="Empty: a SQLite file in the data directory; or postgresql://…")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    track_max_bytes: int = Field(1024 * 1024, ge=1024, description="Body limit of POST /track.")
    batch_max_items: int = Field(500, ge=1, description="Most payloads in one POST /track/batch.")
    batch_max_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Body limit of POST /track/batch.")
    upload_max_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Body limit of POST /upload.")
    default_session_timeout_minutes: float = Field(10, gt=0)

    writer_max_batch: int = Field(512, ge=1, description="Most interactions committed in one transaction.")
    writer_max_pending: int = Field(20_000, ge=1, description="Queued writes before /track answers 503.")
    key_cache_seconds: float = Field(5, ge=0, description="How long verified keys are trusted before a reload.")

    analytics_refresh_seconds: float = Field(5, gt=0, description="How often DuckDB catches up with the store.")
    analytics_timezone: str = Field("UTC", description="IANA zone in which hours, days and weeks are counted.")
    prices_file: Path | None = Field(None, description="A CSV of model prices extending or overriding the shipped one.")
    export_sync_seconds: float = Field(10, gt=0, description="How soon the server runs schedules added by the CLI.")

    secret_key: str = Field("", description="Signs dashboard cookies; empty: generated once into the data directory.")
    login_hours: float = Field(168, gt=0, description="How long a dashboard login lasts.")

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @field_validator("analytics_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from None
        return value

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'tally.db').resolve()}"
        return self

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def analytics_path(self) -> Path:
        return self.data_dir / "analytics.duckdb"

"""The one validated settings class, read from `TALLY_*` environment variables."""

import os
import socket
from pathlib import Path
from typing import Literal
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
    body_timeout_seconds: float = Field(30, gt=0, description="A request body must arrive within this time.")
    max_connections: int = Field(1000, ge=1, description="Connections served at once; more are answered 503.")

    writer_max_batch: int = Field(512, ge=1, description="Most interactions committed in one transaction.")
    writer_max_pending: int = Field(20_000, ge=1, description="Queued writes before /track answers 503.")
    key_cache_seconds: float = Field(5, ge=0, description="How long verified keys and app limits are trusted "
                                                          "before a reload.")
    app_max_interactions_per_second: float = Field(
        0, ge=0, description="Interactions one app may send a second, over every replica (429 beyond); 0: no "
                             "limit. `tally apps set-limit` overrides it per app.")
    app_max_bytes_per_second: float = Field(
        0, ge=0, description="Request bytes one app may send a second (429 beyond); 0: no limit.")

    redaction_mode: Literal["off", "mask", "hash", "drop-body"] = Field(
        "off", description="What ingest hides in every app's texts and raw JSON before storing: off, mask ([EMAIL]), "
                           "hash ([EMAIL:9f86d0…], keyed) or drop-body (no text at all). `tally apps set-redaction` "
                           "overrides it per app.")
    redaction_detectors: str = Field("email,phone,card,iban,ip,secret",
                                     description="The built-in detectors mask and hash use, comma-separated.")
    redaction_patterns: dict[str, str] = Field(
        default_factory=dict, description='Detectors of your own, as JSON: {"LABEL": "regular expression"}; a '
                                          "match becomes [LABEL].")

    analytics_refresh_seconds: float = Field(5, gt=0, description="How often DuckDB catches up with the store.")
    analytics_verify_seconds: float = Field(
        300, ge=0, description="How often a refresh also checks DuckDB holds exactly the store's interactions "
                               "(deletions show then); 0: at every refresh.")
    analytics_timezone: str = Field("UTC", description="IANA zone in which hours, days and weeks are counted.")
    prices_file: Path | None = Field(None, description="A CSV of model prices extending or overriding the shipped one.")
    export_sync_seconds: float = Field(10, gt=0, description="How often each server looks for export schedules due.")
    alert_delivery_seconds: float = Field(2, gt=0, description="How often each server posts the alerts due to their "
                                                               "webhooks.")
    export_schedules_max: int = Field(20, ge=1, description="Export schedules one API token or dashboard account may "
                                                            "have (the command line has no limit).")
    export_min_interval_minutes: float = Field(60, ge=1, description="The shortest time between two fires of a "
                                                                     "crontab added through the API or dashboard.")
    exports_dir: Path | None = Field(None, description="Where scheduled CSV files go, shared by every replica; "
                                                       "empty: `exports` in the data directory.")
    replica: str = Field("", description="This server's name in export run history; empty: host name and pid.")
    workers: int = Field(1, ge=1, description="Processes `tally serve` runs (PostgreSQL only); each keeps its own "
                                              "DuckDB file.")
    trusted_proxies: str = Field("", description="Addresses or CIDRs of reverse proxies whose X-Forwarded-For is "
                                                 "believed, comma-separated; empty: none (not even loopback).")

    secret_key: str = Field("", description="Signs dashboard cookies; empty: generated once and kept in the store.")
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

    def redaction_policy(self) -> dict:
        """The server's redaction policy in the form an app's is stored in."""
        detectors = [name.strip() for name in self.redaction_detectors.split(",") if name.strip()]
        return {"mode": self.redaction_mode, "detectors": detectors, "patterns": self.redaction_patterns}

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'tally.db').resolve()}"
        return self

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def exports_folder(self) -> Path:
        return self.exports_dir if self.exports_dir is not None else self.data_dir / "exports"

    @property
    def replica_name(self) -> str:
        return self.replica or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def analytics_path(self) -> Path:
        return self.data_dir / "analytics.duckdb"

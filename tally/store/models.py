"""The SQLModel tables. Times are integer milliseconds since the epoch, as in the Reconify payload."""

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, LargeBinary, Text, Unicode, UniqueConstraint
from sqlmodel import Field, SQLModel

from tally.store.types import BigId


def _millis(nullable: bool = False, index: bool = False):
    return Field(default=None if nullable else 0, sa_column=Column(BigInteger, nullable=nullable, index=index))


def _text(nullable: bool = True):
    return Field(default=None if nullable else "", sa_column=Column(Text, nullable=nullable))


def _primary_key():
    return Field(default=None, sa_column=Column(BigId, primary_key=True))


def _reference(table: str, nullable: bool = True, index: bool = False):
    return Field(
        default=None,
        sa_column=Column(BigId, ForeignKey(f"{table}.id"), nullable=nullable, index=index),
    )


class App(SQLModel, table=True):
    __tablename__ = "app"

    id: int | None = _primary_key()
    name: str = Field(max_length=200, unique=True)
    app_key: str = Field(max_length=64, unique=True)
    session_timeout_minutes: float | None = None
    created_at: int = _millis()


class ApiKey(SQLModel, table=True):
    """A secret key of an app; only its SHA-256 is kept."""

    __tablename__ = "api_key"

    id: int | None = _primary_key()
    app_id: int = _reference("app", nullable=False, index=True)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: int = _millis()
    revoked_at: int | None = _millis(nullable=True)


class ReadToken(SQLModel, table=True):
    """A bearer token for the read API; only its SHA-256 is kept."""

    __tablename__ = "read_token"

    id: int | None = _primary_key()
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: int = _millis()
    revoked_at: int | None = _millis(nullable=True)


class EndUser(SQLModel, table=True):
    """A user of an app, known by userId or by email (lower-cased in `email_key`)."""

    __tablename__ = "end_user"
    __table_args__ = (
        UniqueConstraint("app_id", "external_id"),
        Index("ix_end_user_app_email", "app_id", "email_key"),
    )

    id: int | None = _primary_key()
    app_id: int = _reference("app", nullable=False)
    external_id: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    email_key: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=64)
    gender: str | None = Field(default=None, max_length=64)
    is_authenticated: bool | None = None
    profile_at: int = _millis()
    created_at: int = _millis()
    updated_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, index=True, server_default="0"))


class InteractionSession(SQLModel, table=True):
    """A group of interactions; `merged_into` points at the survivor when a late arrival joins two."""

    __tablename__ = "interaction_session"
    __table_args__ = (UniqueConstraint("app_id", "external_id"),)

    id: int | None = _primary_key()
    app_id: int = _reference("app", nullable=False)
    external_id: str | None = Field(default=None, max_length=255)
    user_id: int | None = _reference("end_user")
    merged_into: int | None = _reference("interaction_session")
    created_at: int = _millis()


class Interaction(SQLModel, table=True):
    """One LLM call: normalised columns for analytics plus the raw request and response."""

    __tablename__ = "interaction"
    __table_args__ = (
        UniqueConstraint("app_id", "response_ref"),
        Index("ix_interaction_grouping", "app_id", "session_key", "request_at", "id"),
        Index("ix_interaction_session_time", "session_id", "request_at"),
        Index("ix_interaction_user_time", "user_id", "request_at"),
    )

    id: int | None = _primary_key()
    app_id: int = _reference("app", nullable=False)
    user_id: int = _reference("end_user", nullable=False)
    session_id: int = _reference("interaction_session", nullable=False)
    session_key: str = Field(max_length=300)
    session_timeout_ms: int | None = _millis(nullable=True)
    provider: str = Field(max_length=32)
    type: str = Field(max_length=32)
    model: str | None = Field(default=None, max_length=200)
    input_text: str = _text(nullable=False)
    output_text: str = _text(nullable=False)
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None  # part of prompt_tokens served from the provider's prompt cache
    completion_tokens: int | None = None
    total_tokens: int | None = None
    usage_source: str = Field(max_length=16)
    finish_reason: str | None = Field(default=None, max_length=64)
    request_at: int = _millis()
    response_at: int = _millis()
    latency_ms: int = 0
    image_count: int = 0
    is_error: bool = False
    response_ref: str | None = Field(default=None, max_length=255)
    client_version: str | None = Field(default=None, max_length=64)
    request_json: str = _text(nullable=False)
    response_json: str = _text(nullable=False)
    received_at: int = _millis()
    updated_at: int = _millis(index=True)


class InteractionImage(SQLModel, table=True):
    """An image named by an interaction and/or uploaded by /upload, whichever came first."""

    __tablename__ = "interaction_image"
    __table_args__ = (UniqueConstraint("app_id", "filename"),)

    id: int | None = _primary_key()
    app_id: int = _reference("app", nullable=False)
    filename: str = Field(max_length=255)
    interaction_id: int | None = _reference("interaction", index=True)
    path: str | None = Field(default=None, max_length=500)
    size_bytes: int | None = None
    created_at: int = _millis()


class DashboardAccount(SQLModel, table=True):
    """A person who may log in to the dashboard; the password is kept as an Argon2id hash."""

    __tablename__ = "dashboard_account"

    id: int | None = _primary_key()
    email: str = Field(max_length=320, unique=True)  # lower-cased
    password_hash: str = Field(max_length=255)
    is_admin: bool = False
    created_at: int = _millis()
    password_changed_at: int = _millis()


class DashboardLogin(SQLModel, table=True):
    """A logged-in browser: the cookie carries the token, the store only its SHA-256, so logout revokes it."""

    __tablename__ = "dashboard_login"

    id: int | None = _primary_key()
    account_id: int = _reference("dashboard_account", nullable=False, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: int = _millis()
    expires_at: int = _millis()


class ExportSchedule(SQLModel, table=True):
    """A CSV export that the server runs on a cron schedule; the source of truth for the scheduler's jobs."""

    __tablename__ = "export_schedule"

    id: int | None = _primary_key()
    dataset: str = Field(max_length=32)
    cron: str = Field(max_length=200)
    timezone: str = Field(max_length=64)
    app_id: int | None = _reference("app")
    directory: str = _text(nullable=False)  # absolute, or relative to the data directory
    include_raw: bool = False
    created_at: int = _millis()


class ExportRun(SQLModel, table=True):
    """One run of a schedule: the period it exported, where to, and how it ended."""

    __tablename__ = "export_run"
    __table_args__ = (Index("ix_export_run_schedule_started", "schedule_id", "started_at"),)

    id: int | None = _primary_key()
    schedule_id: int = _reference("export_schedule", nullable=False)
    period: str = Field(max_length=32)
    period_start: int = _millis()
    period_end: int = _millis()
    started_at: int = _millis(index=True)
    finished_at: int | None = _millis(nullable=True)
    status: str = Field(max_length=16)  # running, succeeded or failed
    rows: int | None = None
    bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    file: str | None = _text()
    error: str | None = _text()


class ExportJob(SQLModel, table=True):
    """APScheduler's job table (`SQLAlchemyJobStore`), declared here so that a migration creates it."""

    __tablename__ = "export_job"

    id: str = Field(sa_column=Column(Unicode(191), primary_key=True))
    next_run_time: float | None = Field(default=None, sa_column=Column(Float(25), index=True))
    job_state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))

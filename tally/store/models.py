"""The SQLModel tables. Times are integer milliseconds since the epoch, as in the Reconify payload."""

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Table, Unicode, UniqueConstraint
from sqlmodel import Field, SQLModel

# The tables of erasures and retention passes live in their own module; imported here, they are registered with
# the metadata that migrations read whenever the models are.
from tally.store.privacy_models import Erasure, RetentionRun  # noqa: F401
from tally.store.types import BigId, app_ids, millis, primary_key, reference, text_field


class App(SQLModel, table=True):
    __tablename__ = "app"

    id: int | None = primary_key()
    name: str = Field(max_length=200, unique=True)
    app_key: str = Field(max_length=64, unique=True)
    session_timeout_minutes: float | None = None
    created_at: int = millis()
    # Ingest limits; None: the server's defaults (TALLY_APP_MAX_*), 0: no limit.
    max_per_second: float | None = None
    max_bytes_per_second: float | None = None
    # What redaction hides before anything of the app is written, as {"mode", "detectors", "patterns"}; None: the
    # server's policy (TALLY_REDACTION_*).
    redaction: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Days the raw content of interactions (texts, raw JSON) and uploaded images are kept; None: forever. Images
    # without a number of their own follow the content's.
    raw_retention_days: int | None = None
    upload_retention_days: int | None = None


class AppRate(SQLModel, table=True):
    """An ingest limit's bucket, shared by every replica: the theoretical arrival time (epoch ms) of GCRA."""

    __tablename__ = "app_rate"

    app_id: int = Field(sa_column=Column(BigId, ForeignKey("app.id", ondelete="CASCADE"), primary_key=True))
    kind: str = Field(max_length=16, primary_key=True)  # interactions or bytes
    tat: float = 0.0


class ApiKey(SQLModel, table=True):
    """A secret key of an app; only its SHA-256 is kept."""

    __tablename__ = "api_key"

    id: int | None = primary_key()
    app_id: int = reference("app", nullable=False, index=True)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: int = millis()
    revoked_at: int | None = millis(nullable=True)


class ReadToken(SQLModel, table=True):
    """A bearer token for the APIs; only its SHA-256 is kept. `scope` is what it may do: `read` (the read API and
    CSV downloads), `export` (also export schedules) or `admin` (everything)."""

    __tablename__ = "read_token"

    id: int | None = primary_key()
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    scope: str = Field(default="read", max_length=16, sa_column_kwargs={"server_default": "read"})
    created_at: int = millis()
    expires_at: int | None = millis(nullable=True)
    last_used_at: int | None = millis(nullable=True)
    revoked_at: int | None = millis(nullable=True)
    apps: list[int] | None = app_ids()


class EndUser(SQLModel, table=True):
    """A user of an app, known by userId or by email (lower-cased in `email_key`)."""

    __tablename__ = "end_user"
    __table_args__ = (
        UniqueConstraint("app_id", "external_id"),
        Index("ix_end_user_app_email", "app_id", "email_key"),
    )

    id: int | None = primary_key()
    app_id: int = reference("app", nullable=False)
    external_id: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    email_key: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=64)
    gender: str | None = Field(default=None, max_length=64)
    is_authenticated: bool | None = None
    # When each profile field got its value (the request time of the interaction that brought it): a field keeps
    # its latest non-empty value by request time, whatever order interactions arrive in.
    email_at: int | None = millis(nullable=True)
    first_name_at: int | None = millis(nullable=True)
    last_name_at: int | None = millis(nullable=True)
    phone_at: int | None = millis(nullable=True)
    gender_at: int | None = millis(nullable=True)
    is_authenticated_at: int | None = millis(nullable=True)
    profile_at: int = millis()
    created_at: int = millis()
    updated_at: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, index=True, server_default="0"))


class InteractionSession(SQLModel, table=True):
    """A group of interactions; `merged_into` points at the survivor when a late arrival joins two. An explicit
    session id (`external_id`) names one session, or several when its payloads carry a timeout."""

    __tablename__ = "interaction_session"
    __table_args__ = (Index("ix_interaction_session_app_external", "app_id", "external_id"),)

    id: int | None = primary_key()
    app_id: int = reference("app", nullable=False)
    external_id: str | None = Field(default=None, max_length=255)
    # Indexed for their foreign keys: deleting a user or a session (an erasure) looks up the rows naming it.
    user_id: int | None = reference("end_user", index=True)
    merged_into: int | None = reference("interaction_session", index=True)
    created_at: int = millis()


class Interaction(SQLModel, table=True):
    """One LLM call: normalised columns for analytics plus the raw request and response."""

    __tablename__ = "interaction"
    __table_args__ = (
        UniqueConstraint("app_id", "response_ref"),
        Index("ix_interaction_grouping", "app_id", "session_key", "request_at", "id"),
        Index("ix_interaction_session_time", "session_id", "request_at"),
        Index("ix_interaction_user_time", "user_id", "request_at"),
    )

    id: int | None = primary_key()
    app_id: int = reference("app", nullable=False)
    user_id: int = reference("end_user", nullable=False)
    session_id: int = reference("interaction_session", nullable=False)
    session_key: str = Field(max_length=300)
    session_timeout_ms: int | None = millis(nullable=True)
    provider: str = Field(max_length=32)
    type: str = Field(max_length=32)
    model: str | None = Field(default=None, max_length=200)
    input_text: str = text_field(nullable=False)
    output_text: str = text_field(nullable=False)
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = None  # part of prompt_tokens served from the provider's prompt cache
    completion_tokens: int | None = None
    total_tokens: int | None = None
    usage_source: str = Field(max_length=16)
    finish_reason: str | None = Field(default=None, max_length=64)
    request_at: int = millis()
    response_at: int = millis()
    latency_ms: int | None = None  # None: unknown (no response time, or one before the request)
    image_count: int = 0
    is_error: bool = False
    response_ref: str | None = Field(default=None, max_length=255)
    client_version: str | None = Field(default=None, max_length=64)
    request_json: str = text_field(nullable=False)
    response_json: str = text_field(nullable=False)
    malformed: str | None = text_field()  # JSON [{"field", "message"}]: where the response lacked its format's shape
    received_at: int = millis()
    updated_at: int = millis(index=True)
    expired_at: int | None = millis(nullable=True)  # when retention removed its texts and raw JSON


class InteractionImage(SQLModel, table=True):
    """An image named by an interaction and/or uploaded by /upload, whichever came first."""

    __tablename__ = "interaction_image"
    __table_args__ = (UniqueConstraint("app_id", "filename"),)

    id: int | None = primary_key()
    app_id: int = reference("app", nullable=False)
    filename: str = Field(max_length=255)
    interaction_id: int | None = reference("interaction", index=True)
    path: str | None = Field(default=None, max_length=500)
    size_bytes: int | None = None
    created_at: int = millis()


class DashboardAccount(SQLModel, table=True):
    """A person who may log in to the dashboard; the password is kept as an Argon2id hash."""

    __tablename__ = "dashboard_account"

    id: int | None = primary_key()
    email: str = Field(max_length=320, unique=True)  # lower-cased
    password_hash: str = Field(max_length=255)
    # viewer: pages and figures; analyst: also CSV downloads and export schedules; admin: also accounts.
    role: str = Field(default="viewer", max_length=16, sa_column_kwargs={"server_default": "viewer"})
    created_at: int = millis()
    password_changed_at: int = millis()
    disabled_at: int | None = millis(nullable=True)  # a disabled account cannot log in; its logins ended
    apps: list[int] | None = app_ids()


class DashboardLogin(SQLModel, table=True):
    """A logged-in browser: the cookie carries the token, the store only its SHA-256, so logout revokes it."""

    __tablename__ = "dashboard_login"

    id: int | None = primary_key()
    account_id: int = reference("dashboard_account", nullable=False, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: int = millis()
    expires_at: int = millis()


class ExportSchedule(SQLModel, table=True):
    """A CSV export that the server runs on a cron schedule; the source of truth for the scheduler's jobs."""

    __tablename__ = "export_schedule"

    id: int | None = primary_key()
    dataset: str = Field(max_length=32)
    cron: str = Field(max_length=200)
    timezone: str = Field(max_length=64)
    app_id: int | None = reference("app")
    directory: str = text_field(nullable=False)  # absolute, or relative to the exports folder (TALLY_EXPORTS_DIR)
    include_raw: bool = False
    created_at: int = millis()
    # The next time the crontab fires. A replica that moves it on (compare-and-set) has claimed that fire.
    next_run_at: int | None = millis(nullable=True)
    created_by: str | None = Field(default=None, sa_column=Column(Unicode(400), nullable=True))  # audit's actor


class ExportRun(SQLModel, table=True):
    """One run of a schedule: the period it exported, where to, and how it ended."""

    __tablename__ = "export_run"
    __table_args__ = (Index("ix_export_run_schedule_started", "schedule_id", "started_at"),)

    id: int | None = primary_key()
    schedule_id: int = reference("export_schedule", nullable=False)
    period: str = Field(max_length=32)
    period_start: int = millis()
    period_end: int = millis()
    started_at: int = millis(index=True)
    finished_at: int | None = millis(nullable=True)
    status: str = Field(max_length=16)  # running, succeeded or failed
    rows: int | None = None
    bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    file: str | None = text_field()
    error: str | None = text_field()
    replica: str | None = Field(default=None, max_length=200)  # which server process wrote it
    heartbeat_at: int | None = millis(nullable=True)  # a running run's last sign of life; stale, it is taken over


class InstanceSecret(SQLModel, table=True):
    """A secret every replica must share (the key that signs dashboard cookies), made once by the first."""

    __tablename__ = "instance_secret"

    name: str = Field(sa_column=Column(Unicode(64), primary_key=True))
    value: str = Field(max_length=200)


class LoginThrottle(SQLModel, table=True):
    """Login attempts per email or client address, counted atomically in the store, so every replica sees them."""

    __tablename__ = "login_throttle"

    key: str = Field(sa_column=Column(Unicode(400), primary_key=True))
    attempts: int = 0  # in the window that started at `window_start`
    window_start: int = millis()
    blocked_until: int = millis()


def table_of(model: type[SQLModel]) -> Table:
    """A model's SQLAlchemy table, for Core statements (SQLModel declares `__table__` for its type checker not)."""
    return model.__table__  # type: ignore[attr-defined]


def id_of(row: SQLModel) -> int:
    """The id of a row already flushed to the store (SQLModel types ids as optional, for rows not yet added)."""
    value = getattr(row, "id", None)
    if not isinstance(value, int):
        raise ValueError(f"this {type(row).__name__} has no id yet: flush it first")
    return value


class AuditEvent(SQLModel, table=True):
    """One change to who may do what (tokens, accounts, app keys, export schedules) or one login attempt: who did
    it (`actor`), from where, to what. Never a secret: names and shown prefixes only."""

    __tablename__ = "audit_event"

    id: int | None = primary_key()
    at: int = millis(index=True)
    actor: str = Field(sa_column=Column(Unicode(400), nullable=False))
    action: str = Field(sa_column=Column(Unicode(64), nullable=False))
    target: str | None = Field(default=None, sa_column=Column(Unicode(400), nullable=True))
    address: str | None = Field(default=None, sa_column=Column(Unicode(64), nullable=True))
    detail: str | None = Field(default=None, sa_column=Column(Unicode, nullable=True))  # JSON


class Budget(SQLModel, table=True):
    """A cap on an app's tokens or cost per calendar period (in the analytics time zone), for the app as a whole
    or for each of its end users, optionally for one model; `warn_at` is the share of the limit that warns."""

    __tablename__ = "budget"

    id: int | None = primary_key()
    app_id: int = reference("app", nullable=False, index=True)
    per_user: bool = False
    metric: str = Field(max_length=8)  # tokens or cost (USD)
    limit_value: float
    period: str = Field(max_length=8)  # hour, day, week or month
    model: str | None = Field(default=None, max_length=200)
    warn_at: float = 0.8
    created_at: int = millis()
    created_by: str | None = Field(default=None, sa_column=Column(Unicode(400), nullable=True))


class AlertRule(SQLModel, table=True):
    """What to watch (`kind`: budget, error_rate, latency, unpriced_model, silence), of one app or of all, and
    the webhook told when it fires and when it resolves; `secret` signs the deliveries (HMAC-SHA256)."""

    __tablename__ = "alert_rule"

    id: int | None = primary_key()
    kind: str = Field(max_length=16)
    app_id: int | None = reference("app")
    threshold: float | None = None  # error_rate: percent; latency: p95 ms
    window_minutes: float = 15
    webhook_url: str = text_field(nullable=False)
    format: str = Field(default="json", max_length=8)  # json, or slack (a Slack-compatible `text`)
    secret: str = Field(max_length=64)
    created_at: int = millis()
    created_by: str | None = Field(default=None, sa_column=Column(Unicode(400), nullable=True))


class AlertState(SQLModel, table=True):
    """Where each watched subject of a rule stands (ok, warning, firing); a replica that moves it on (compare-and-
    set) is the one that records the event, so each crossing is told once."""

    __tablename__ = "alert_state"

    rule_id: int = Field(sa_column=Column(BigId, ForeignKey("alert_rule.id", ondelete="CASCADE"), primary_key=True))
    subject: str = Field(sa_column=Column(Unicode(400), primary_key=True))
    level: str = Field(max_length=8)
    since: int = millis()


class AlertEvent(SQLModel, table=True):
    """A crossing (warning, firing, resolved) and its delivery to the rule's webhook: attempts, when the next is
    due, and how it ended (pending, delivered, failed)."""

    __tablename__ = "alert_event"
    __table_args__ = (Index("ix_alert_event_due", "delivery", "next_attempt_at"),)

    id: int | None = primary_key()
    rule_id: int = Field(sa_column=Column(BigId, ForeignKey("alert_rule.id", ondelete="CASCADE"), nullable=False,
                                          index=True))
    subject: str = Field(sa_column=Column(Unicode(400), nullable=False))
    status: str = Field(max_length=8)  # warning, firing or resolved
    value: float | None = None
    message: str = text_field(nullable=False)
    at: int = millis()
    delivery: str = Field(default="pending", max_length=10)  # pending, delivered or failed
    attempts: int = 0
    next_attempt_at: int | None = millis(nullable=True)
    last_error: str | None = text_field()
    delivered_at: int | None = millis(nullable=True)

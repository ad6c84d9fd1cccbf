"""API tokens: the bearer secrets that open the read, analytics and exports APIs, each with a scope.

Scopes nest: `read` (the read and analytics APIs, CSV downloads) < `export` (also create and delete export
schedules) < `admin` (everything). Only a token's SHA-256 is kept; it may expire, and it can be revoked.
"""

from dataclasses import dataclass

from sqlalchemy import Connection, or_, update
from sqlmodel import Session, col, select

from tally.store.app_access import app_names
from tally.store.models import ReadToken, table_of
from tally.store.secrets import display_prefix, hash_secret, new_secret, now_ms

READ_TOKEN_PREFIX = "tly_rt_"
SCOPES = ("read", "export", "admin")  # each allows what the ones before it allow
DAY_MS = 86_400_000
MAX_EXPIRY_DAYS = 36_500  # a hundred years; beyond it, no expiry is meant
LAST_USED_STEP_MS = 60_000  # `last_used_at` is written at most once a minute per token
_tokens = table_of(ReadToken)


class TokenError(ValueError):
    """A token command that cannot be done (unknown scope or token); the message says why, `field` about what."""

    def __init__(self, message: str, field: str = "scope") -> None:
        super().__init__(message)
        self.field = field


class NoToken(TokenError):
    """No live token has that name or prefix."""


def allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


def create_read_token(db: Session, *, name: str, scope: str = "read", expires_in_days: float | None = None,
                      apps: list[int] | None = None) -> str:
    """A new token, returned once in clear; `expires_in_days` None: it never expires; `apps` None: every app."""
    if scope not in SCOPES:
        raise TokenError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    if scope == "admin" and apps is not None:
        raise TokenError("an admin token manages every app's tokens and accounts: it cannot be limited to some apps",
                         "apps")
    if expires_in_days is not None and not 0 < expires_in_days <= MAX_EXPIRY_DAYS:  # NaN fails too
        raise TokenError(f"--expires-in must be a number of days above 0 and at most {MAX_EXPIRY_DAYS:,}",
                         "expires_in_days")
    token, now = new_secret(READ_TOKEN_PREFIX), now_ms()
    expires_at = now + round(expires_in_days * DAY_MS) if expires_in_days is not None else None
    db.add(ReadToken(name=name, prefix=display_prefix(token), token_hash=hash_secret(token), scope=scope,
                     created_at=now, expires_at=expires_at, apps=apps))
    db.flush()
    return token


def find_live_token(db: Session, *, token: str, now: int | None = None) -> ReadToken | None:
    """The token with this secret, unless it was revoked or has expired."""
    now = now if now is not None else now_ms()
    found = db.exec(select(ReadToken).where(ReadToken.token_hash == hash_secret(token))).first()
    if found is None or found.revoked_at is not None or (found.expires_at is not None and found.expires_at <= now):
        return None
    return found


def due_for_use_mark(token: ReadToken, *, now: int) -> bool:
    """Whether `last_used_at` is to be written now: at most once a minute per token, so reads stay reads."""
    return token.last_used_at is None or now - token.last_used_at >= LAST_USED_STEP_MS


def mark_used(conn: Connection, token_id: int, *, now: int) -> None:
    """Records that the token was used at `now` (in a transaction of its own: see `due_for_use_mark`)."""
    conn.execute(update(_tokens).where(_tokens.c.id == token_id, or_(
        _tokens.c.last_used_at.is_(None), _tokens.c.last_used_at < now)).values(last_used_at=now))


@dataclass(frozen=True)
class TokenInfo:
    name: str
    prefix: str
    scope: str
    created_at: int
    last_used_at: int | None
    expires_at: int | None
    revoked_at: int | None
    apps: list[str] | None  # the names of the apps it is limited to; None: every app


def list_tokens(db: Session) -> list[TokenInfo]:
    rows = db.exec(select(ReadToken).order_by(col(ReadToken.id))).all()
    return [TokenInfo(row.name, row.prefix, row.scope, row.created_at, row.last_used_at, row.expires_at,
                      row.revoked_at, app_names(db, row.apps)) for row in rows]


def revoke_tokens(db: Session, name_or_prefix: str, *, now: int | None = None) -> int:
    """Revokes the live tokens named `name_or_prefix`, or the one whose shown prefix it is; returns how many."""
    live = db.exec(select(ReadToken).where(col(ReadToken.revoked_at).is_(None), or_(
        col(ReadToken.name) == name_or_prefix, col(ReadToken.prefix) == name_or_prefix))).all()
    if not live:
        raise NoToken(f"no live token is named {name_or_prefix!r} or starts with it", "name")
    for token in live:
        token.revoked_at = now if now is not None else now_ms()
        db.add(token)
    db.flush()
    return len(live)

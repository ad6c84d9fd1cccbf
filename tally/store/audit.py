"""The audit trail: every change to who may do what (API tokens, dashboard accounts, app keys, export schedules)
and every dashboard login, with who did it, when and from where. A change and its record are written in one
transaction, so neither is kept without the other. Callers pass names and shown prefixes, never secrets.
"""

import getpass
import json
import socket
from typing import Any

from sqlalchemy import Connection, insert
from sqlmodel import Session, col, select

from tally.store.models import AuditEvent, ReadToken, table_of
from tally.store.secrets import now_ms

_events = table_of(AuditEvent)


def record(db: Session | Connection, *, actor: str, action: str, target: str | None = None,
           address: str | None = None, detail: dict[str, Any] | None = None, now: int | None = None) -> None:
    values = {"at": now if now is not None else now_ms(), "actor": actor[:400], "action": action,
              "target": target[:400] if target is not None else None, "address": address[:64] if address else None,
              "detail": json.dumps(detail, sort_keys=True) if detail else None}
    (db.connection() if isinstance(db, Session) else db).execute(insert(_events).values(**values))


def events(db: Session, *, since_ms: int = 0, limit: int = 200) -> list[AuditEvent]:
    """The latest events at or after `since_ms`, newest first."""
    return list(db.exec(select(AuditEvent).where(col(AuditEvent.at) >= since_ms)
                        .order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc()).limit(limit)).all())


def cli_actor() -> str:
    """Who runs a `tally` command: the operating system's user, on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        user = "?"
    return f"cli:{user}@{socket.gethostname()}"


def token_actor(token: ReadToken) -> str:
    return f"token:{token.name} ({token.prefix}…)"


def account_actor(email: str) -> str:
    return f"account:{email}"

"""Erasing a person from an app (a GDPR erasure request): their end user rows, interactions (texts and raw JSON
with them), images and sessions, in one transaction; an `erasure` row for every server's DuckDB file to follow,
and a receipt in the audit log with counts and never a personal value. Erasing again finds nothing and says so."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, delete, exists, insert, or_, select, update
from sqlmodel import Session

from tally.store import audit
from tally.store.engine import scrub_write_ahead_log, serialise
from tally.store.models import (
    App,
    EndUser,
    ExportRun,
    ExportSchedule,
    Interaction,
    InteractionImage,
    InteractionSession,
    id_of,
    table_of,
)
from tally.store.privacy_models import Erasure
from tally.store.secrets import now_ms

log = logging.getLogger(__name__)
# Export datasets with a row per interaction, session or user; `daily_usage` holds per-app totals only.
PERSONAL_DATASETS = ("interactions", "sessions", "users")
_CHUNK = 500  # ids per IN list


@dataclass(frozen=True)
class Erased:
    erasure_id: int
    users: int
    interactions: int
    sessions: int
    images: int
    export_files: list[str] = field(default_factory=list)  # written before, with the person in them: not touched
    image_files: list[Path] = field(default_factory=list)  # to delete once the transaction has committed

    def counts(self) -> dict[str, int]:
        return {"users": self.users, "interactions": self.interactions, "sessions": self.sessions,
                "images": self.images, "export_files": len(self.export_files)}


def erase_person(db: Session, *, app: App, user_id: str | None, email: str | None, actor: str,
                 data_dir: Path, address: str | None = None) -> Erased:
    """Removes every trace of the end user known by `user_id` and/or `email` (case-insensitive) in `app`."""
    if not user_id and not email:
        raise ValueError("give the person's user id or email")
    app_id, email_key = id_of(app), email.strip().lower() if email else None
    conn = db.connection()
    # The identities ingest serialises on: a payload of this person being stored now either commits first (and
    # is erased) or waits and makes a new user after.
    serialise(conn, [*([f"i:{app_id}:{user_id}"] if user_id else []), *([f"e:{app_id}:{email_key}"] if email_key
                                                                         else [])])
    users = _users(conn, app_id, user_id, email_key)
    user_ids = [user.id for user in users]
    serialise(conn, [f"i:{app_id}:{u.external_id}" for u in users if u.external_id]
              + [f"e:{app_id}:{u.email_key}" for u in users if u.email_key])
    files = _export_files(conn, app_id, user_ids) if user_ids else []
    images = _remove_images(conn, user_ids) if user_ids else []
    sessions = _sessions_left_empty(conn, user_ids) if user_ids else []
    interactions = conn.execute(delete(_interaction).where(_interaction.c.user_id.in_(user_ids))).rowcount \
        if user_ids else 0
    _remove_sessions(conn, user_ids, sessions)
    if user_ids:
        conn.execute(delete(table_of(EndUser)).where(table_of(EndUser).c.id.in_(user_ids)))
    erasure_id = conn.execute(insert(table_of(Erasure)).values(
        app_id=app_id, user_ids=user_ids, session_ids=sessions, at=now_ms()).returning(table_of(Erasure).c.id)
    ).scalar_one()
    erased = Erased(erasure_id, len(user_ids), interactions, len(sessions), len(images), files,
                    [data_dir / path for path in images])
    audit.record(db, actor=actor, action="person.erase", target=app.name, address=address,
                 detail={"erasure": erasure_id, **erased.counts(), "asked_by": "user_id" if user_id and not email
                         else "email" if email and not user_id else "user_id and email"})
    return erased


_interaction = table_of(Interaction)
_session = table_of(InteractionSession)
_image = table_of(InteractionImage)


def _users(conn: Connection, app_id: int, user_id: str | None, email_key: str | None) -> list:
    users = table_of(EndUser)
    match = [*([users.c.external_id == user_id] if user_id else []),
             *([users.c.email_key == email_key] if email_key else [])]
    return list(conn.execute(select(users.c.id, users.c.external_id, users.c.email_key)
                             .where(users.c.app_id == app_id, or_(*match)).order_by(users.c.id)))


def _export_files(conn: Connection, app_id: int, user_ids: list[int]) -> list[str]:
    """The files of finished export runs of a personal dataset, of this app or of all, whose period holds one of
    the person's interactions."""
    runs, schedules = table_of(ExportRun), table_of(ExportSchedule)
    theirs = exists().where(_interaction.c.user_id.in_(user_ids), _interaction.c.request_at >= runs.c.period_start,
                            _interaction.c.request_at < runs.c.period_end)
    query = (select(runs.c.file).distinct().join(schedules, schedules.c.id == runs.c.schedule_id)
             .where(runs.c.status == "succeeded", runs.c.file.is_not(None),
                    schedules.c.dataset.in_(PERSONAL_DATASETS),
                    schedules.c.app_id.is_(None) | (schedules.c.app_id == app_id), theirs)
             .order_by(runs.c.file))
    return [file for (file,) in conn.execute(query)]


def _remove_images(conn: Connection, user_ids: list[int]) -> list[str]:
    """Deletes the person's image rows; their files' paths (relative to the data directory) are returned."""
    theirs = _image.c.interaction_id.in_(select(_interaction.c.id).where(_interaction.c.user_id.in_(user_ids)))
    paths = [path for (path,) in conn.execute(select(_image.c.path).where(theirs)) if path]
    conn.execute(delete(_image).where(theirs))
    return paths


def _sessions_left_empty(conn: Connection, user_ids: list[int]) -> list[int]:
    """The sessions the person started or took part in that hold nobody else's interactions."""
    others = exists().where(_interaction.c.session_id == _session.c.id, _interaction.c.user_id.not_in(user_ids))
    touched = _session.c.user_id.in_(user_ids) | _session.c.id.in_(
        select(_interaction.c.session_id).where(_interaction.c.user_id.in_(user_ids)))
    return [session_id for (session_id,) in conn.execute(select(_session.c.id).where(touched, ~others)
                                                         .order_by(_session.c.id))]


def _remove_sessions(conn: Connection, user_ids: list[int], empty: list[int]) -> None:
    """Deletes the sessions left empty; one shared with others stays, no longer naming the person as its user."""
    if user_ids:
        conn.execute(update(_session).where(_session.c.user_id.in_(user_ids)).values(user_id=None))
    for start in range(0, len(empty), _CHUNK):
        chunk = empty[start:start + _CHUNK]
        conn.execute(update(_session).where(_session.c.merged_into.in_(bindparam("ids", expanding=True)))
                     .values(merged_into=None), {"ids": chunk})
        conn.execute(delete(_session).where(_session.c.id.in_(chunk)))


def after_commit(engine: Engine, erased: Erased) -> bool:
    """Once the erasure has committed: deletes the images' files, and empties SQLite's write-ahead log, which may
    still hold older copies of the pages the rows were on. False when readers kept the log busy (it is emptied
    at the next checkpoint then)."""
    for path in erased.image_files:
        path.unlink(missing_ok=True)
    emptied = scrub_write_ahead_log(engine)
    if not emptied:
        log.warning("erasure %d: readers kept SQLite's write-ahead log busy; it still holds older copies of the "
                    "erased rows until the next checkpoint empties it", erased.erasure_id)
    return emptied

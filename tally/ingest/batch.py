"""Storing a batch of prepared interactions and uploads in one transaction (the writer's unit of work)."""

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update

from tally.ingest.prepare import PreparedInteraction
from tally.ingest.sessions import SessionPlacer
from tally.ingest.users import UserDirectory, UserRequest
from tally.store.models import Interaction, InteractionImage
from tally.store.secrets import now_ms

_interactions = Interaction.__table__
_images = InteractionImage.__table__
_insert_returning_ids = insert(_interactions).returning(_interactions.c.id, sort_by_parameter_order=True)
_select_by_refs = select(_interactions.c.response_ref, _interactions.c.id, _interactions.c.user_id,
                         _interactions.c.session_id).where(
    _interactions.c.app_id == bindparam("app_id"), _interactions.c.response_ref.in_(bindparam("refs", expanding=True)))


@dataclass(frozen=True, slots=True)
class StoredInteraction:
    interaction_id: int
    user_id: int
    session_id: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class ImageUpload:
    app_id: int
    filename: str
    path: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class StoredUpload:
    filename: str
    interaction_id: int | None


class BatchStore:
    """Holds the identity caches that make the common case free of lookups; one instance per writer."""

    def __init__(self) -> None:
        self.users = UserDirectory()
        self.sessions = SessionPlacer()

    def forget(self) -> None:
        """Drop the caches; called after a failed transaction, whose rows never existed."""
        self.users.clear()
        self.sessions.clear()

    def store(self, conn: Connection, jobs: list) -> list:
        self.sessions.trim()
        results: list = [None] * len(jobs)
        tracked = [(i, job) for i, job in enumerate(jobs) if isinstance(job, PreparedInteraction)]
        if tracked:
            self._store_interactions(conn, tracked, results)
        for index, job in enumerate(jobs):
            if isinstance(job, ImageUpload):
                results[index] = StoredUpload(job.filename, _record_upload(conn, job))
        return results

    def _store_interactions(self, conn: Connection, tracked: list, results: list) -> None:
        now = now_ms()
        originals = _stored_originals(conn, tracked)
        to_store: list[tuple[int, PreparedInteraction]] = []
        first_of_ref: dict[tuple[int, str], int] = {}
        duplicates_in_batch: list[tuple[int, int]] = []
        for index, job in tracked:
            ref = job.row["response_ref"]
            if ref is not None and (job.app_id, ref) in originals:
                results[index] = originals[(job.app_id, ref)]
            elif ref is not None and (job.app_id, ref) in first_of_ref:
                duplicates_in_batch.append((index, first_of_ref[(job.app_id, ref)]))
            else:
                if ref is not None:
                    first_of_ref[(job.app_id, ref)] = index
                to_store.append((index, job))

        self.sessions.preload_explicit(conn, {(job.app_id, job.session_external_id) for _, job in to_store
                                              if job.session_external_id is not None})
        users = self.users.resolve_batch(
            conn, [UserRequest(job.app_id, job.user, job.row["request_at"]) for _, job in to_store], now_ms=now)
        pending_rows: list[dict] = []
        pending_slots: list[tuple[int, PreparedInteraction]] = []

        def flush() -> None:
            """Insert what this batch has placed so far: its new sessions, then its interactions."""
            self.sessions.insert_pending(conn)
            if not pending_rows:
                return
            for row in pending_rows:
                row["session_id"] = row["session_id"].id
            ids = conn.execute(_insert_returning_ids, pending_rows).scalars().all()
            for (index, job), row, new_id in zip(pending_slots, pending_rows, ids):
                results[index] = StoredInteraction(new_id, row["user_id"], row["session_id"])
                _link_images(conn, job, new_id, now)
            pending_rows.clear()
            pending_slots.clear()

        for (index, job), (user_id, new_user) in zip(to_store, users):
            key = job.row["session_key"] or f"u:{user_id}"
            if new_user and job.session_external_id is None:
                self.sessions.mark_new_key(job.app_id, key)
            session = self.sessions.place(
                conn, app_id=job.app_id, key=key, at_ms=job.row["request_at"], timeout_ms=job.timeout_ms,
                user_id=user_id, external_id=job.session_external_id, now_ms=now, flush=flush)
            pending_rows.append({**job.row, "session_key": key, "user_id": user_id, "session_id": session})
            pending_slots.append((index, job))
        flush()
        for index, original_index in duplicates_in_batch:
            first = results[original_index]
            results[index] = StoredInteraction(first.interaction_id, first.user_id, first.session_id, duplicate=True)


def _stored_originals(conn: Connection, tracked: list) -> dict[tuple[int, str], StoredInteraction]:
    """Interactions already stored under the batch's provider response ids: retries are stored once."""
    refs_by_app: dict[int, set[str]] = {}
    for _, job in tracked:
        if job.row["response_ref"] is not None:
            refs_by_app.setdefault(job.app_id, set()).add(job.row["response_ref"])
    found = {}
    for app_id, refs in refs_by_app.items():
        rows = conn.execute(_select_by_refs, {"app_id": app_id, "refs": list(refs)})
        for ref, interaction_id, user_id, session_id in rows:
            found[(app_id, ref)] = StoredInteraction(interaction_id, user_id, session_id, duplicate=True)
    return found


def _link_images(conn: Connection, job: PreparedInteraction, interaction_id: int, now: int) -> None:
    for filename in job.image_files:
        existing = conn.execute(select(_images.c.id).where(
            _images.c.app_id == job.app_id, _images.c.filename == filename)).scalar()
        if existing is None:
            conn.execute(insert(_images), {"app_id": job.app_id, "filename": filename,
                                           "interaction_id": interaction_id, "created_at": now})
        else:
            conn.execute(update(_images).where(_images.c.id == existing).values(interaction_id=interaction_id))


def _record_upload(conn: Connection, upload: ImageUpload) -> int | None:
    """Record an uploaded file; if its interaction arrived first, the row exists and gains the file."""
    existing = conn.execute(select(_images.c.id, _images.c.interaction_id).where(
        _images.c.app_id == upload.app_id, _images.c.filename == upload.filename)).first()
    values = {"path": upload.path, "size_bytes": upload.size_bytes}
    if existing is None:
        conn.execute(insert(_images), {**values, "app_id": upload.app_id, "filename": upload.filename,
                                       "created_at": now_ms()})
        return None
    conn.execute(update(_images).where(_images.c.id == existing.id).values(**values))
    return existing.interaction_id

"""Storing a batch of prepared interactions and uploads in one transaction (the writer's unit of work)."""

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update

from tally.ingest.cache import StoreCache
from tally.ingest.prepare import PreparedInteraction
from tally.ingest.sessions import Placement, SessionPlacer, time_order
from tally.ingest.users import UserRequest, resolve_users
from tally.store.bulk import insert_rows
from tally.store.engine import serialise
from tally.store.models import Interaction, InteractionImage, table_of
from tally.store.secrets import now_ms

_interactions = table_of(Interaction)
_images = table_of(InteractionImage)
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


def store_batch(conn: Connection, jobs: list, cache: StoreCache | None = None) -> list:
    """Stores interactions and uploads in the caller's transaction; each result is a StoredInteraction or a
    StoredUpload, in the order of `jobs`. Users, sessions and duplicates are decided from the store as that
    transaction sees it, helped by `cache` where it may be trusted; if the transaction fails, forget the cache."""
    results: list = [None] * len(jobs)
    tracked = [(i, job) for i, job in enumerate(jobs) if isinstance(job, PreparedInteraction)]
    serialise(conn, _identities(jobs))
    if tracked:
        usable = cache is not None and cache.begin(conn)
        _store_interactions(conn, tracked, results, cache if usable else None)
    for index, job in enumerate(jobs):
        if isinstance(job, ImageUpload):
            results[index] = StoredUpload(job.filename, _record_upload(conn, job))
    return results


def _store_interactions(conn: Connection, tracked: list, results: list, cache: StoreCache | None) -> None:
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

    users = resolve_users(conn, [UserRequest(job.app_id, job.user, job.row["request_at"]) for _, job in to_store],
                          now_ms=now, known=cache.users if cache else None)
    placements = [Placement(job.app_id, job.row["session_key"] or f"u:{user_id}", job.row["request_at"],
                            job.timeout_ms, user_id, job.session_external_id)
                  for (_, job), (user_id, _) in zip(to_store, users)]
    new_keys = {(p.app_id, p.key) for p, (_, created) in zip(placements, users) if created and p.external_id is None}
    keys = {(p.app_id, p.key) for p in placements}
    # A user's key is known only now that users are resolved: its lock is the second and last to be taken.
    serialise(conn, (f"k:{app_id}:{key}" for app_id, key in keys - new_keys))
    sessions = SessionPlacer(cache.tails if cache else None)
    sessions.load_tails(conn, keys, new=new_keys)
    pending_rows: list[dict] = []
    pending_slots: list[tuple[int, PreparedInteraction]] = []

    def flush() -> None:
        """Insert what this batch has placed so far: its new sessions, then its interactions."""
        sessions.insert_pending(conn)
        if not pending_rows:
            return
        # Inserted in arrival order, so that ids follow arrival as they always have, whatever order placed them.
        order = sorted(range(len(pending_rows)), key=lambda i: pending_slots[i][0])
        pending_rows[:] = [pending_rows[i] for i in order]
        pending_slots[:] = [pending_slots[i] for i in order]
        for row in pending_rows:
            row["session_id"] = row["session_id"].id
        ids = insert_rows(conn, _interactions, pending_rows)
        for (index, job), row, new_id in zip(pending_slots, pending_rows, ids):
            results[index] = StoredInteraction(new_id, row["user_id"], row["session_id"])
            _link_images(conn, job, new_id, now)
        pending_rows.clear()
        pending_slots.clear()

    # In time order within each key, so that only an arrival earlier than what is already stored takes the
    # slower placement between stored neighbours; the grouping itself does not depend on this order.
    order = sorted(range(len(to_store)), key=lambda i: (placements[i].app_id, placements[i].key,
                                                        *time_order(placements[i].at_ms, placements[i].timeout_ms)))
    for position in order:
        (index, job), placement = to_store[position], placements[position]
        session = sessions.place(conn, placement, now_ms=now, flush=flush)
        pending_rows.append({**job.row, "session_key": placement.key, "user_id": placement.user_id,
                             "session_id": session})
        pending_slots.append((index, job))
    flush()
    for index, original_index in duplicates_in_batch:
        first = results[original_index]
        results[index] = StoredInteraction(first.interaction_id, first.user_id, first.session_id, duplicate=True)


def _identities(jobs: list) -> Iterator[str]:
    """What the batch decides about, named for `serialise`: response ids (dedupe), user identities, explicit
    sessions and image files. Taken first, in one go; with them held, another replica's transaction on the same
    things waits for this one to commit, then sees what it wrote. (Generated lazily: SQLite needs none.)"""
    for job in jobs:
        if isinstance(job, ImageUpload):
            yield f"f:{job.app_id}:{job.filename}"
            continue
        app_id, row, user = job.app_id, job.row, job.user
        if row["response_ref"] is not None:
            yield f"r:{app_id}:{row['response_ref']}"
        if user is not None and user.userId is not None:
            yield f"i:{app_id}:{user.userId}"
        if user is not None and user.email:
            yield f"e:{app_id}:{user.email.lower()}"
        if row["session_key"] is not None:
            yield f"k:{app_id}:{row['session_key']}"
        yield from (f"f:{app_id}:{filename}" for filename in job.image_files)


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

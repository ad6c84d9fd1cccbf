"""Reading stored interactions, users and sessions back, with a session's transcript in pages."""

import orjson
from sqlalchemy import ColumnElement, and_, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from tally.ingest.transcript import transcript
from tally.store.app_access import AppIds, sees
from tally.store.limits import MAX_EPOCH_MS, MAX_ID
from tally.store.models import EndUser, Interaction, InteractionImage, InteractionSession, table_of

_i = table_of(Interaction).c
_SUMMARY_FIELDS = ("id", "app_id", "user_id", "session_id", "provider", "type", "model", "input_text",
                   "output_text", "prompt_tokens", "cached_prompt_tokens", "completion_tokens", "total_tokens",
                   "usage_source",
                   "finish_reason", "request_at", "response_at", "latency_ms", "image_count", "is_error",
                   "response_ref", "client_version", "received_at", "expired_at")
TURNS_PER_PAGE, MAX_TURNS_PER_PAGE = 100, 500
PAGE_RAW_BYTES = 4 * 1024 * 1024  # raw JSON characters read for one transcript page (at least one turn)
NAMES_SHOWN = 20  # of a session's users and models; `users_more` and `models_more` count the rest
IMAGES_SHOWN = 50  # per interaction; `images_more` counts the rest




def read_interaction(db: Session, interaction_id: int, *, apps: AppIds) -> dict | None:
    """The interaction with its images and raw JSON; None if there is none that a reader limited to `apps` sees."""
    row = db.get(Interaction, interaction_id)
    if row is None or not sees(apps, row.app_id):
        return None
    images, more = _images_of(db, [interaction_id])
    return {**{name: getattr(row, name) for name in _SUMMARY_FIELDS}, "images": images.get(interaction_id, []),
            "images_more": more.get(interaction_id, 0),
            "malformed": orjson.loads(row.malformed) if row.malformed else None,
            "request": orjson.loads(row.request_json), "response": orjson.loads(row.response_json)}




def read_user(db: Session, user_id: int, *, apps: AppIds) -> dict | None:
    """The end user's profile, first and last seen, counts and their 50 most recent sessions; or None (also for
    another app's user than a reader limited to `apps` sees)."""
    user = db.get(EndUser, user_id)
    if user is None or not sees(apps, user.app_id):
        return None
    totals = db.execute(sa_select(
        func.count(), func.count(func.distinct(_i.session_id)), func.min(_i.request_at), func.max(_i.request_at),
        func.sum(_i.prompt_tokens), func.sum(_i.completion_tokens),
    ).where(_i.user_id == user_id)).one()
    return {
        "id": user.id, "app_id": user.app_id, "user_id": user.external_id, "email": user.email,
        "first_name": user.first_name, "last_name": user.last_name, "phone": user.phone, "gender": user.gender,
        "is_authenticated": user.is_authenticated, "interaction_count": totals[0], "session_count": totals[1],
        "first_seen": totals[2], "last_seen": totals[3], "prompt_tokens": totals[4] or 0,
        "completion_tokens": totals[5] or 0, "sessions": _recent_sessions(db, user_id),
    }


def _recent_sessions(db: Session, user_id: int, limit: int = 50) -> list[dict]:
    rows = db.execute(sa_select(
        _i.session_id, func.count(), func.min(_i.request_at), func.max(_i.response_at), func.sum(_i.total_tokens),
    ).where(_i.user_id == user_id).group_by(_i.session_id).order_by(func.min(_i.request_at).desc())
        .limit(limit)).all()
    return [{"id": session_id, "turns": turns, "started_at": started, "ended_at": ended,
             "total_tokens": tokens or 0} for session_id, turns, started, ended, tokens in rows]




def read_session(db: Session, session_id: int, *, apps: AppIds, cursor: str | None = None,
                 limit: int = TURNS_PER_PAGE) -> dict | None:
    """The session (followed through merges) with one page of its transcript, or None (also for another app's
    session than a reader limited to `apps` sees)."""
    after = _turn_cursor(cursor)
    session = _canonical_session(db, session_id)
    if session is None or not sees(apps, session.app_id):
        return None
    mine = _i.session_id == session.id
    count, started, ended, tokens, users, models = db.execute(sa_select(
        func.count(), func.min(_i.request_at), func.max(_i.response_at), func.sum(_i.total_tokens),
        func.count(func.distinct(_i.user_id)), func.count(func.distinct(_i.model))).where(mine)).one()
    user_ids = db.execute(sa_select(_i.user_id).where(mine).distinct().order_by(_i.user_id)
                          .limit(NAMES_SHOWN)).scalars().all()
    model_names = db.execute(sa_select(_i.model).where(mine, _i.model.is_not(None)).distinct()
                             .order_by(_i.model).limit(NAMES_SHOWN)).scalars().all()
    rows, next_cursor = _turns(db, mine, after, limit)
    images, images_more = _images_of(db, [row.id for row in rows if row.id is not None])
    # The turn before the page says what had been said by then, so a page repeats none of the history that chat
    # clients resend with every call.
    before = _turns_before(db, mine, rows[0]) if rows else None
    messages = [message for message in transcript(([before] if before else []) + rows, images)
                if before is None or message["interaction_id"] != before.id]
    for message in messages:
        if "images" in message:
            message["images_more"] = images_more.get(message["interaction_id"], 0)
    return {
        "id": session.id, "requested_id": session_id, "app_id": session.app_id, "session": session.external_id,
        "user_ids": list(user_ids), "users_more": users - len(user_ids), "interaction_count": count,
        "started_at": started, "ended_at": ended, "duration_ms": (ended - started) if count else 0,
        "models": list(model_names), "models_more": models - len(model_names),
        "total_tokens": tokens or 0, "messages": messages, "next_cursor": next_cursor,
    }


class BadCursor(ValueError):
    """A transcript cursor that was not handed out; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _turn_cursor(text: str | None) -> tuple[int, int] | None:
    """`request_at-id` of the last turn of the previous page."""
    if not text:
        return None
    at, _, turn = text.partition("-")
    if not (at.isascii() and at.isdigit() and turn.isascii() and turn.isdigit() and len(at) <= 16
            and len(turn) <= 19 and int(at) <= MAX_EPOCH_MS and int(turn) <= MAX_ID):
        raise BadCursor("cursor", "is not a cursor this API handed out")
    return int(at), int(turn)


def _turns(db: Session, mine: ColumnElement[bool], after: tuple[int, int] | None,
           limit: int) -> tuple[list[Interaction], str | None]:
    """Up to `limit` turns after `after`, cut once their raw JSON passes PAGE_RAW_BYTES; the cursor after them."""
    where = [mine]
    if after is not None:
        where.append(or_(_i.request_at > after[0], and_(_i.request_at == after[0], _i.id > after[1])))
    sizes = db.execute(sa_select(_i.id, _i.request_at, func.length(_i.request_json) + func.length(_i.response_json))
                       .where(*where).order_by(_i.request_at, _i.id).limit(limit + 1)).all()
    page: list[tuple[int, int]] = []
    total = 0
    for turn_id, at, size in sizes[:limit]:
        if page and total + size > PAGE_RAW_BYTES:
            break
        page.append((turn_id, at))
        total += size
    more = len(page) < len(sizes)
    found = {row.id: row for row in db.exec(select(Interaction).where(col(Interaction.id).in_([i for i, _ in page])))}
    rows = [found[turn_id] for turn_id, _ in page if turn_id in found]
    return rows, (f"{page[-1][1]}-{page[-1][0]}" if more and page else None)


def _turns_before(db: Session, mine: ColumnElement[bool], first: Interaction) -> Interaction | None:
    return db.exec(select(Interaction).where(mine, or_(
        _i.request_at < first.request_at, and_(_i.request_at == first.request_at, _i.id < first.id)))
        .order_by(_i.request_at.desc(), _i.id.desc()).limit(1)).first()




def _canonical_session(db: Session, session_id: int) -> InteractionSession | None:
    """Follows `merged_into`, so an id handed out before a late arrival merged two sessions still resolves."""
    session = db.get(InteractionSession, session_id)
    for _ in range(1000):
        if session is None or session.merged_into is None:
            break
        session = db.get(InteractionSession, session.merged_into)
    return session


def _images_of(db: Session, interaction_ids: list[int]) -> tuple[dict[int, list[dict]], dict[int, int]]:
    """The first IMAGES_SHOWN images of each interaction, and how many more each has."""
    if not interaction_ids:
        return {}, {}
    image = table_of(InteractionImage).c
    ranked = sa_select(image.id, image.interaction_id, image.filename, image.path, image.size_bytes,
                       func.row_number().over(partition_by=image.interaction_id, order_by=(image.filename, image.id)
                                              ).label("rank")).where(image.interaction_id.in_(interaction_ids)).subquery()
    images: dict[int, list[dict]] = {}
    for found in db.execute(sa_select(*ranked.c).where(ranked.c.rank <= IMAGES_SHOWN)
                            .order_by(ranked.c.interaction_id, ranked.c.rank)):
        images.setdefault(found.interaction_id, []).append({
            "id": found.id, "filename": found.filename, "uploaded": found.path is not None,
            "url": f"/api/v1/images/{found.id}" if found.path else None, "size_bytes": found.size_bytes,
        })
    counts = db.execute(sa_select(image.interaction_id, func.count()).where(image.interaction_id.in_(interaction_ids))
                        .group_by(image.interaction_id)).all()
    return images, {turn: total - len(images.get(turn, [])) for turn, total in counts}

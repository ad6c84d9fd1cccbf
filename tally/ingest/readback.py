"""Reading stored interactions, users and sessions back (bearer read token): `/api/v1/…/{id}`."""

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from sqlalchemy import func
from sqlmodel import Session, select

from tally.ingest.transcript import transcript
from tally.store.deps import ReadTokenDep, SessionDep
from tally.store.models import EndUser, Interaction, InteractionImage, InteractionSession

router = APIRouter(prefix="/api/v1", tags=["read"])
_SUMMARY_FIELDS = ("id", "app_id", "user_id", "session_id", "provider", "type", "model", "input_text",
                   "output_text", "prompt_tokens", "cached_prompt_tokens", "completion_tokens", "total_tokens", "usage_source",
                   "finish_reason", "request_at", "response_at", "latency_ms", "image_count", "is_error",
                   "response_ref", "client_version", "received_at")


@router.get("/interactions/{interaction_id}", summary="One interaction: normalised fields and the raw JSON")
def get_interaction(interaction_id: int, db: SessionDep, _: ReadTokenDep) -> dict:
    found = read_interaction(db, interaction_id)
    if found is None:
        raise HTTPException(404, f"no interaction {interaction_id}")
    return found


def read_interaction(db: Session, interaction_id: int) -> dict | None:
    row = db.get(Interaction, interaction_id)
    if row is None:
        return None
    images = _images_of(db, [interaction_id]).get(interaction_id, [])
    return {**{name: getattr(row, name) for name in _SUMMARY_FIELDS}, "images": images,
            "request": orjson.loads(row.request_json), "response": orjson.loads(row.response_json)}


@router.get("/users/{user_id}", summary="One end user: profile, first and last seen, counts, recent sessions")
def get_user(user_id: int, db: SessionDep, _: ReadTokenDep) -> dict:
    user = db.get(EndUser, user_id)
    if user is None:
        raise HTTPException(404, f"no user {user_id}")
    totals = db.exec(select(
        func.count(), func.count(func.distinct(Interaction.session_id)), func.min(Interaction.request_at),
        func.max(Interaction.request_at), func.sum(Interaction.prompt_tokens), func.sum(Interaction.completion_tokens),
    ).where(Interaction.user_id == user_id)).one()
    return {
        "id": user.id, "app_id": user.app_id, "user_id": user.external_id, "email": user.email,
        "first_name": user.first_name, "last_name": user.last_name, "phone": user.phone, "gender": user.gender,
        "is_authenticated": user.is_authenticated, "interaction_count": totals[0], "session_count": totals[1],
        "first_seen": totals[2], "last_seen": totals[3], "prompt_tokens": totals[4] or 0,
        "completion_tokens": totals[5] or 0, "sessions": _recent_sessions(db, user_id),
    }


def _recent_sessions(db: SessionDep, user_id: int, limit: int = 50) -> list[dict]:
    rows = db.exec(select(
        Interaction.session_id, func.count(), func.min(Interaction.request_at), func.max(Interaction.response_at),
        func.sum(Interaction.total_tokens),
    ).where(Interaction.user_id == user_id).group_by(Interaction.session_id)
        .order_by(func.min(Interaction.request_at).desc()).limit(limit)).all()
    return [{"id": session_id, "turns": turns, "started_at": started, "ended_at": ended,
             "total_tokens": tokens or 0} for session_id, turns, started, ended, tokens in rows]


@router.get("/sessions/{session_id}", summary="One session and its transcript")
def get_session(session_id: int, db: SessionDep, _: ReadTokenDep) -> dict:
    found = read_session(db, session_id)
    if found is None:
        raise HTTPException(404, f"no session {session_id}")
    return found


def read_session(db: Session, session_id: int) -> dict | None:
    """The session (followed through merges) with its transcript, or None."""
    session = _canonical_session(db, session_id)
    if session is None:
        return None
    rows = db.exec(select(Interaction).where(Interaction.session_id == session.id)
                   .order_by(Interaction.request_at, Interaction.id)).all()
    started = rows[0].request_at if rows else None
    ended = max(row.response_at for row in rows) if rows else None
    return {
        "id": session.id, "requested_id": session_id, "app_id": session.app_id, "session": session.external_id,
        "user_ids": sorted({row.user_id for row in rows}), "interaction_count": len(rows),
        "started_at": started, "ended_at": ended, "duration_ms": (ended - started) if rows else 0,
        "models": sorted({row.model for row in rows if row.model}),
        "total_tokens": sum(row.total_tokens or 0 for row in rows),
        "messages": transcript(rows, _images_of(db, [row.id for row in rows])),
    }


@router.get("/images/{image_id}", summary="The bytes of an uploaded image", response_class=FileResponse)
def get_image(image_id: int, request: Request, db: SessionDep, _: ReadTokenDep) -> FileResponse:
    image = db.get(InteractionImage, image_id)
    if image is None or image.path is None:
        raise HTTPException(404, f"no uploaded image {image_id}")
    return FileResponse(request.app.state.settings.data_dir / image.path, media_type="image/png")


def _canonical_session(db: Session, session_id: int) -> InteractionSession | None:
    """Follows `merged_into`, so an id handed out before a late arrival merged two sessions still resolves."""
    session = db.get(InteractionSession, session_id)
    for _ in range(1000):
        if session is None or session.merged_into is None:
            break
        session = db.get(InteractionSession, session.merged_into)
    return session


def _images_of(db: Session, interaction_ids: list[int]) -> dict[int, list[dict]]:
    if not interaction_ids:
        return {}
    images: dict[int, list[dict]] = {}
    for image in db.exec(select(InteractionImage).where(InteractionImage.interaction_id.in_(interaction_ids))
                         .order_by(InteractionImage.filename)):
        images.setdefault(image.interaction_id, []).append({
            "id": image.id, "filename": image.filename, "uploaded": image.path is not None,
            "url": f"/api/v1/images/{image.id}" if image.path else None, "size_bytes": image.size_bytes,
        })
    return images

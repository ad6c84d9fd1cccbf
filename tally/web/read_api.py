"""The read API of stored objects (bearer read token): `/api/v1/{interactions,users,sessions,images}/{id}`."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from starlette.responses import Response, StreamingResponse

from tally.ingest.readback import (
    IMAGES_SHOWN,
    MAX_TURNS_PER_PAGE,
    NAMES_SHOWN,
    PAGE_RAW_BYTES,
    TURNS_PER_PAGE,
    read_interaction,
    read_session,
    read_user,
)
from tally.store.app_access import app_ids
from tally.store.limits import MAX_ID
from tally.web.deps import ReadTokenDep, SessionDep
from tally.web.errors import error_responses
from tally.web.images import image_response

router = APIRouter(prefix="/api/v1", tags=["read"], responses=error_responses(400, 401, 404, 422, 503))
# An id outside what the store hands out is not found (404), like any id that was never handed out.
StoredId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="An id as the store hands it out")]


@router.get("/interactions/{interaction_id}", summary="One interaction: normalised fields and the raw JSON",
            description=f"`images` lists the first {IMAGES_SHOWN} images; `images_more` counts the rest.")
def get_interaction(interaction_id: StoredId, db: SessionDep, token: ReadTokenDep) -> dict:
    found = read_interaction(db, interaction_id, apps=app_ids(token.apps))
    if found is None:
        raise HTTPException(404, f"no interaction {interaction_id}")
    return found


@router.get("/users/{user_id}", summary="One end user: profile, first and last seen, counts, recent sessions",
            description="`sessions` lists the user's 50 most recent sessions; `session_count` counts them all.")
def get_user(user_id: StoredId, db: SessionDep, token: ReadTokenDep) -> dict:
    found = read_user(db, user_id, apps=app_ids(token.apps))
    if found is None:
        raise HTTPException(404, f"no user {user_id}")
    return found


@router.get("/sessions/{session_id}", summary="One session and a page of its transcript",
            description=f"The session's figures, and the messages of up to `limit` of its interactions (turns) in "
                        f"time order, fewer when their raw JSON passes {PAGE_RAW_BYTES // 2**20} MiB; "
                        f"`next_cursor` continues. `user_ids` and `models` name the first {NAMES_SHOWN}; "
                        "`users_more` and `models_more` count the rest.")
def get_session(session_id: StoredId, db: SessionDep, token: ReadTokenDep,
                cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
                limit: Annotated[int, Query(ge=1, le=MAX_TURNS_PER_PAGE,
                                            description="Turns per page (at most 500)")] = TURNS_PER_PAGE) -> dict:
    found = read_session(db, session_id, apps=app_ids(token.apps), cursor=cursor, limit=limit)
    if found is None:
        raise HTTPException(404, f"no session {session_id}")
    return found


@router.get("/images/{image_id}", summary="The bytes of an uploaded image", response_class=StreamingResponse,
            description="Served as the raster type its bytes show (PNG, JPEG, GIF or WebP), else as an "
                        "`application/octet-stream` attachment; always with `nosniff` and a sandboxing CSP.")
def get_image(image_id: StoredId, request: Request, db: SessionDep, token: ReadTokenDep) -> Response:
    found = image_response(db, request.app.state.settings.data_dir, image_id, apps=app_ids(token.apps))
    if found is None:
        raise HTTPException(404, f"no uploaded image {image_id}")
    return found

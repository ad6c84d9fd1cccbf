"""The dashboard's pages under /dashboard; every one needs a logged-in account."""

import time
from dataclasses import dataclass
from typing import Callable, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sqlmodel import Session

from tally.analytics.filters import decode_cursor
from tally.analytics.service import Analytics
from tally.dashboard import pages
from tally.dashboard.rendering import PLOTLY_JS, PLOTLY_VERSION, render
from tally.dashboard.view_filters import View, parse_view
from tally.dashboard.web_session import AccountDep
from tally.store.deps import SessionDep
from tally.store.models import InteractionImage

router = APIRouter(prefix="/dashboard", include_in_schema=False)
_RASTER_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


@dataclass(frozen=True)
class StoreViews:
    """Readers of the relational store that the server hands in (they live in a layer the dashboard may not
    import): a session with its transcript, and one interaction with its raw JSON; each returns None if absent."""

    session: Callable[[Session, int], dict | None]
    interaction: Callable[[Session, int], dict | None]


def _analytics(request: Request) -> Analytics:
    return request.app.state.analytics


def view_of(request: Request) -> View:
    analytics = _analytics(request)
    return parse_view(dict(request.query_params), zone=analytics.zone, now_ms=time.time_ns() // 1_000_000)


def page_response(request: Request, account, template: str, active: str, view: View | None,
                  **context) -> Response:
    options = _analytics(request).queries().filter_options()
    return render(request, template, {"account": account, "active": active, "view": view, "options": options,
                                      "app_names": {app["id"]: app["name"] for app in options["apps"]}, **context})


def _not_found(request: Request, account, what: str) -> Response:
    return render(request, "not_found.html", {"account": account, "active": "", "view": None, "what": what},
                  status=404)


@router.get("")
def overview(request: Request, account: AccountDep) -> Response:
    view = view_of(request)
    found = pages.overview(_analytics(request), view)
    return page_response(request, account, "overview.html", "overview", view, **found)


@router.get("/models")
def models(request: Request, account: AccountDep) -> Response:
    view = view_of(request)
    found = pages.models(_analytics(request), view)
    return page_response(request, account, "models.html", "models", view, **found)


@router.get("/users")
def users(request: Request, account: AccountDep, search: str | None = None,
          sort: Literal["tokens", "cost", "last_seen", "interactions"] = "last_seen",
          cursor: str | None = None) -> Response:
    view = view_of(request)
    found = pages.users(_analytics(request), view, search=search, sort=sort, after=decode_cursor(cursor, 2))
    return page_response(request, account, "users.html", "users", view, **found)


@router.get("/users/{user_id}")
def user(request: Request, account: AccountDep, user_id: int, cursor: str | None = None) -> Response:
    view = view_of(request)
    found = pages.user(_analytics(request), view, user_id, after=decode_cursor(cursor, 2))
    if found is None:
        return _not_found(request, account, f"user {user_id}")
    return page_response(request, account, "user.html", "users", view, **found)


@router.get("/sessions")
def sessions(request: Request, account: AccountDep, cursor: str | None = None) -> Response:
    view = view_of(request)
    found = pages.sessions(_analytics(request), view, after=decode_cursor(cursor, 2))
    return page_response(request, account, "sessions.html", "sessions", view, **found)


@router.get("/sessions/{session_id}")
def session(request: Request, account: AccountDep, db: SessionDep, session_id: int) -> Response:
    return _stored(request, account, "session", request.app.state.store_views.session(db, session_id), session_id)


@router.get("/interactions")
def interactions(request: Request, account: AccountDep, session: int | None = None,
                 cursor: str | None = None) -> Response:
    view = view_of(request)
    found = pages.interactions(_analytics(request), view, session_id=session, after=decode_cursor(cursor, 2))
    return page_response(request, account, "interactions.html", "interactions", view, **found)


@router.get("/interactions/{interaction_id}")
def interaction(request: Request, account: AccountDep, db: SessionDep, interaction_id: int) -> Response:
    found = request.app.state.store_views.interaction(db, interaction_id)
    return _stored(request, account, "interaction", found, interaction_id)


def _stored(request: Request, account, kind: str, found: dict | None, requested: int) -> Response:
    """A page about one stored session or interaction (read from the store, not the analytics), or a 404."""
    if found is None:
        return _not_found(request, account, f"{kind} {requested}")
    return page_response(request, account, f"{kind}.html", f"{kind}s", view_of(request), **{kind: found})


@router.get("/images/{image_id}")
def image(request: Request, _: AccountDep, db: SessionDep, image_id: int) -> Response:
    """An uploaded image, served only as the raster type its bytes show, so a crafted upload cannot run script."""
    found = db.get(InteractionImage, image_id)
    if found is None or found.path is None:
        return Response("no such image", status_code=404, media_type="text/plain")
    path = request.app.state.settings.data_dir / found.path
    with open(path, "rb") as handle:
        head = handle.read(16)
    media = next((kind for magic, kind in _RASTER_TYPES if head.startswith(magic)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        media = "image/webp"
    headers = {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff",
               "Cache-Control": "private, max-age=3600"}
    if media is None:
        headers["Content-Disposition"] = f'attachment; filename="image-{image_id}.bin"'
    return FileResponse(path, media_type=media or "application/octet-stream", headers=headers)


@router.get("/static/plotly-{version}.min.js")
def plotly_js(version: str) -> Response:
    """plotly.js from the installed plotly package: the dashboard needs no CDN and works offline. The version is
    in the URL, so the file may be cached for good; another version is not here."""
    if version != PLOTLY_VERSION:
        return Response(f"this server has plotly.js {PLOTLY_VERSION}", status_code=404, media_type="text/plain")
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})

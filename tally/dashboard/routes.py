"""The dashboard's pages under /dashboard; every one needs a logged-in account."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, Response

from tally.analytics import listings
from tally.analytics.filters import decode_cursor
from tally.analytics.service import Analytics
from tally.dashboard import pages
from tally.dashboard.rendering import PLOTLY_JS, PLOTLY_VERSION, render
from tally.dashboard.view_filters import View, parse_view
from tally.dashboard.web_session import AccountDep
from tally.store.app_access import app_ids
from tally.store.limits import MAX_ID
from tally.store.models import DashboardAccount
from tally.web.deps import SessionDep

router = APIRouter(prefix="/dashboard", include_in_schema=False)
StoredId = Annotated[int, Path(ge=1, le=MAX_ID)]  # any other id is not found (the app answers 404)
MODEL_CHOICES = 50  # models offered in the filter bar's list; any other can be typed


@dataclass(frozen=True)
class StoreViews:
    """Readers of the relational store that the server hands in (they live in a layer the dashboard may not
    import): a session with a page of its transcript, one interaction with its raw JSON, and an uploaded image
    as a response; each takes the reader's app restriction (`apps=`) and returns None if absent or not seen."""

    session: Callable[..., dict | None]
    interaction: Callable[..., dict | None]
    image: Callable[..., Response | None]


def _analytics(request: Request) -> Analytics:
    return request.app.state.analytics


def view_of(request: Request, account: DashboardAccount) -> View:
    """The URL's view, limited to the apps the account may see."""
    analytics = _analytics(request)
    return parse_view(dict(request.query_params), zone=analytics.zone, now_ms=time.time_ns() // 1_000_000,
                      apps=app_ids(account.apps))


def page_response(request: Request, account: DashboardAccount, template: str, active: str, view: View | None,
                  **context) -> Response:
    options = _analytics(request).queries().filter_options(top_models=MODEL_CHOICES, apps=app_ids(account.apps))
    return render(request, template, {"account": account, "active": active, "view": view, "options": options,
                                      "app_names": {app["id"]: app["name"] for app in options["apps"]}, **context})


def _not_found(request: Request, account, what: str) -> Response:
    return render(request, "not_found.html", {"account": account, "active": "", "view": None, "what": what},
                  status=404)


@router.get("")
def overview(request: Request, account: AccountDep) -> Response:
    view = view_of(request, account)
    found = pages.overview(_analytics(request), view)
    over = _analytics(request).budgets.exceeded(app_ids(account.apps), now_ms=time.time_ns() // 1_000_000)
    return page_response(request, account, "overview.html", "overview", view, budgets_over=over, **found)


@router.get("/models")
def models(request: Request, account: AccountDep) -> Response:
    view = view_of(request, account)
    found = pages.models(_analytics(request), view)
    return page_response(request, account, "models.html", "models", view, **found)


@router.get("/users")
def users(request: Request, account: AccountDep, search: str | None = None,
          sort: Literal["tokens", "cost", "last_seen", "interactions"] = "last_seen",
          cursor: str | None = None) -> Response:
    view = view_of(request, account)
    found = pages.users(_analytics(request), view, search=search, sort=sort,
                        after=decode_cursor(cursor, listings.USER_CURSORS[sort]))
    return page_response(request, account, "users.html", "users", view, **found)


@router.get("/users/{user_id}")
def user(request: Request, account: AccountDep, user_id: StoredId, cursor: str | None = None) -> Response:
    view = view_of(request, account)
    found = pages.user(_analytics(request), view, user_id, after=decode_cursor(cursor, listings.SESSION_CURSOR))
    if found is None:
        return _not_found(request, account, f"user {user_id}")
    return page_response(request, account, "user.html", "users", view, **found)


@router.get("/sessions")
def sessions(request: Request, account: AccountDep, cursor: str | None = None) -> Response:
    view = view_of(request, account)
    found = pages.sessions(_analytics(request), view, after=decode_cursor(cursor, listings.SESSION_CURSOR))
    return page_response(request, account, "sessions.html", "sessions", view, **found)


@router.get("/sessions/{session_id}")
def session(request: Request, account: AccountDep, db: SessionDep, session_id: StoredId,
            cursor: str | None = None) -> Response:
    found = request.app.state.store_views.session(db, session_id, apps=app_ids(account.apps), cursor=cursor)
    return _stored(request, account, "session", found, session_id)


@router.get("/interactions")
def interactions(request: Request, account: AccountDep,
                 session: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                 cursor: str | None = None) -> Response:
    view = view_of(request, account)
    found = pages.interactions(_analytics(request), view, session_id=session,
                               after=decode_cursor(cursor, listings.INTERACTION_CURSOR))
    return page_response(request, account, "interactions.html", "interactions", view, **found)


@router.get("/interactions/{interaction_id}")
def interaction(request: Request, account: AccountDep, db: SessionDep, interaction_id: StoredId) -> Response:
    found = request.app.state.store_views.interaction(db, interaction_id, apps=app_ids(account.apps))
    return _stored(request, account, "interaction", found, interaction_id)


def _stored(request: Request, account, kind: str, found: dict | None, requested: int) -> Response:
    """A page about one stored session or interaction (read from the store, not the analytics), or a 404."""
    if found is None:
        return _not_found(request, account, f"{kind} {requested}")
    return page_response(request, account, f"{kind}.html", f"{kind}s", view_of(request, account), **{kind: found})


@router.get("/images/{image_id}")
def image(request: Request, account: AccountDep, db: SessionDep, image_id: StoredId) -> Response:
    """An uploaded image, served as the API serves it (only as the raster type its bytes show)."""
    found = request.app.state.store_views.image(db, request.app.state.settings.data_dir, image_id,
                                                apps=app_ids(account.apps))
    return found if found is not None else _not_found(request, account, f"image {image_id}")


@router.get("/static/plotly-{version}.min.js")
def plotly_js(version: str) -> Response:
    """plotly.js from the installed plotly package: the dashboard needs no CDN and works offline. The version is
    in the URL, so the file may be cached for good; another version is not here."""
    if version != PLOTLY_VERSION:
        raise HTTPException(404, f"this server has plotly.js {PLOTLY_VERSION}")
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})

"""The analytics read API (`/api/v1`, bearer read token): usage, models, users, sessions, interactions."""

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from tally.analytics import listings
from tally.analytics.filters import FilterError, Filters, all_time, choice, decode_cursor, parse_filters
from tally.analytics.service import Analytics
from tally.store.deps import ReadTokenDep
from tally.store.errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["analytics"])

From = Annotated[str | None, Query(alias="from", description="Start: YYYY-MM-DD (local day), ISO datetime or epoch ms")]
To = Annotated[str | None, Query(alias="to", description="End, exclusive for datetimes; a YYYY-MM-DD includes that whole day")]
AppId = Annotated[str | None, Query(description="App id")]
UserId = Annotated[str | None, Query(description="End-user id (as in /api/v1/users)")]
Limit = Annotated[int, Query(ge=1, le=500)]


def _analytics(request: Request) -> Analytics:
    return request.app.state.analytics


def _filters(request: Request, start, end, app, provider, model, user) -> Filters:
    try:
        return parse_filters(start=start, end=end, app=app, provider=provider, model=model, user=user,
                             zone=_analytics(request).zone, now_ms=time.time_ns() // 1_000_000)
    except FilterError as error:
        raise _bad_filter(error) from None


def _bad_filter(error: FilterError) -> ApiError:
    return ApiError(400, "invalid_filter", str(error), [{"field": error.field, "message": str(error)}])


def _cursor(text: str | None, size: int) -> list | None:
    try:
        return decode_cursor(text, size)
    except FilterError as error:
        raise _bad_filter(error) from None


@router.get("/usage", summary="Usage over time: interactions, errors, tokens by provenance, cost")
def usage(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
          provider: str | None = None, model: str | None = None, user: UserId = None,
          granularity: str = Query("day", description="hour or day")) -> dict:
    try:
        granularity = choice("granularity", granularity, ("hour", "day"))
    except FilterError as error:
        raise _bad_filter(error) from None
    f = _filters(request, start, end, app, provider, model, user)
    analytics = _analytics(request)
    return {"granularity": granularity, "series": analytics.queries().usage_series(f, granularity),
            "freshness": analytics.freshness()}


@router.get("/usage/totals", summary="Totals with provenance: reported vs estimated tokens, unpriced models")
def totals(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
           provider: str | None = None, model: str | None = None, user: UserId = None) -> dict:
    analytics = _analytics(request)
    f = _filters(request, start, end, app, provider, model, user)
    return {**analytics.queries().totals(f), "freshness": analytics.freshness()}


@router.get("/usage/models", summary="Breakdown by provider and model")
def models(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
           provider: str | None = None, model: str | None = None, user: UserId = None) -> dict:
    analytics = _analytics(request)
    f = _filters(request, start, end, app, provider, model, user)
    return {"models": analytics.queries().usage_by_model(f), "freshness": analytics.freshness()}


@router.get("/usage/top-users", summary="The users with the most tokens or cost in the range")
def top_users(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
              sort: Literal["tokens", "cost", "interactions"] = "tokens", limit: Limit = 10) -> dict:
    analytics = _analytics(request)
    f = _filters(request, start, end, app, None, None, None)
    column = {"tokens": "total_tokens", "cost": "cost", "interactions": "interactions"}[sort]
    return {"users": analytics.queries().top_users(f, column, limit), "freshness": analytics.freshness()}


@router.get("/usage/active-users", summary="Distinct active users per day, week or month")
def active_users(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
                 granularity: str = Query("day", description="day, week or month")) -> dict:
    try:
        granularity = choice("granularity", granularity, ("day", "week", "month"))
    except FilterError as error:
        raise _bad_filter(error) from None
    analytics = _analytics(request)
    f = _filters(request, start, end, app, None, None, None)
    return {"granularity": granularity, "series": analytics.queries().active_users(f, granularity),
            "freshness": analytics.freshness()}


@router.get("/users", summary="Users active in the range (every user without from/to): search, sort, pages")
def list_users(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
               provider: str | None = None, model: str | None = None, user: UserId = None,
               search: str | None = None, sort: Literal["tokens", "cost", "last_seen", "interactions"] = "last_seen",
               cursor: str | None = None, limit: Limit = 50) -> dict:
    f = _filters(request, start, end, app, provider, model, user)
    if start is None and end is None:
        f = all_time(app_id=f.app_id, provider=f.provider, model=f.model, user_id=f.user_id)
    analytics = _analytics(request)
    page = listings.users(analytics.warehouse.cursor(), f=f, zone=analytics.settings.analytics_timezone,
                          search=search, sort=sort, after=_cursor(cursor, 2), limit=limit)
    return {**page, "freshness": analytics.freshness()}


@router.get("/sessions", summary="Sessions overlapping the range, newest first")
def list_sessions(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
                  provider: str | None = None, model: str | None = None, user: UserId = None,
                  cursor: str | None = None, limit: Limit = 50) -> dict:
    f = _filters(request, start, end, app, provider, model, user)
    analytics = _analytics(request)
    page = listings.sessions(analytics.warehouse.cursor(), f=f, after=_cursor(cursor, 2), limit=limit)
    return {**page, "freshness": analytics.freshness()}


@router.get("/interactions", summary="Interactions in the range, newest first")
def list_interactions(request: Request, _: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
                      provider: str | None = None, model: str | None = None, user: UserId = None,
                      session: Annotated[int | None, Query(description="Session id")] = None,
                      cursor: str | None = None, limit: Limit = 50) -> dict:
    f = _filters(request, start, end, app, provider, model, user)
    analytics = _analytics(request)
    page = listings.interactions(analytics.warehouse.cursor(), f=f, session_id=session, after=_cursor(cursor, 2),
                                 limit=limit)
    return {**page, "freshness": analytics.freshness()}


@router.get("/analytics/status", summary="How fresh the analytics are")
def status(request: Request, _: ReadTokenDep) -> dict:
    return _analytics(request).freshness()

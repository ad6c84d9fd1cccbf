"""The analytics read API (`/api/v1`, bearer read token): usage, models, users, sessions, interactions."""

import time
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from tally.analytics import listings
from tally.analytics.filters import END_OF_TIME_MS, FilterError, Filters, choice, decode_cursor, parse_filters
from tally.analytics.queries import GRANULARITIES, MAX_SERIES_BUCKETS, UNPRICED_SHOWN, series_buckets
from tally.analytics.service import Analytics
from tally.store.app_access import app_ids
from tally.store.limits import MAX_ID
from tally.store.models import ReadToken
from tally.web.deps import ReadTokenDep
from tally.web.errors import ApiError, error_responses

router = APIRouter(prefix="/api/v1", tags=["analytics"], responses=error_responses(400, 401, 404, 422, 503))

From = Annotated[str | None, Query(alias="from", description="Start: YYYY-MM-DD (local day), ISO datetime or epoch ms")]
To = Annotated[str | None, Query(alias="to",
                                 description="End, exclusive for datetimes; a YYYY-MM-DD includes that whole day")]
AppId = Annotated[str | None, Query(description="App id")]
UserId = Annotated[str | None, Query(description="End-user id (as in /api/v1/users)")]
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page (at most 500); `next_cursor` continues")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
SERIES = (f"at most {MAX_SERIES_BUCKETS:,} buckets: a range that could hold more (counting only the part that can "
          "hold data, from 1970 to a day ahead of now) is a 400 naming `granularity`")


def _analytics(request: Request) -> Analytics:
    return request.app.state.analytics


def _filters(request: Request, token: ReadToken, start, end, app, provider, model, user) -> Filters:
    """The request's filters, limited to the apps the token may see."""
    try:
        return parse_filters(start=start, end=end, app=app, provider=provider, model=model, user=user,
                             zone=_analytics(request).zone, now_ms=time.time_ns() // 1_000_000,
                             apps=app_ids(token.apps))
    except FilterError as error:
        raise _bad_filter(error) from None


def _bad_filter(error: FilterError) -> ApiError:
    return ApiError(400, "invalid_filter", str(error), [{"field": error.field, "message": str(error)}])


def _cursor(text: str | None, kinds: tuple[str, ...]) -> list | None:
    try:
        return decode_cursor(text, kinds)
    except FilterError as error:
        raise _bad_filter(error) from None


def _granularity(value: str, allowed: tuple[str, ...], f: Filters) -> str:
    try:
        granularity = choice("granularity", value, allowed)
    except FilterError as error:
        raise _bad_filter(error) from None
    buckets = series_buckets(f, granularity, time.time_ns() // 1_000_000)
    if buckets > MAX_SERIES_BUCKETS:
        coarser = allowed[allowed.index(granularity) + 1:]
        raise _bad_filter(FilterError("granularity", (
            f"{granularity} buckets over this range could be {buckets:,}, more than {MAX_SERIES_BUCKETS:,}: "
            f"shorten the range" + (f" or use {' or '.join(coarser)}" if coarser else ""))))
    return granularity


@router.get("/usage", summary="Usage over time: interactions, errors, tokens by provenance, cost",
            description=f"One row per local bucket with data, oldest first; {SERIES}. Each hour of real time is a "
                        "row: an hour row also gives `start_ms` (when it starts, epoch ms) and `utc_offset`, which "
                        "tell apart the two hours the clocks going back name alike.")
def usage(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
          provider: str | None = None, model: str | None = None, user: UserId = None,
          granularity: str = Query("day", description="hour, day, week (from Monday) or month")) -> dict:
    f = _filters(request, token, start, end, app, provider, model, user)
    granularity = _granularity(granularity, GRANULARITIES, f)
    analytics = _analytics(request)
    return {"granularity": granularity, "series": analytics.queries().usage_series(f, granularity),
            "freshness": analytics.freshness()}


@router.get("/usage/totals", summary="Totals with provenance: reported vs estimated tokens, unpriced models",
            description=f"`unpriced_models` names the {UNPRICED_SHOWN} unpriced models with the most interactions; "
                        "`unpriced_models_other` counts the other unpriced `models` and their `interactions`.")
def totals(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
           provider: str | None = None, model: str | None = None, user: UserId = None) -> dict:
    analytics = _analytics(request)
    f = _filters(request, token, start, end, app, provider, model, user)
    return {**analytics.queries().totals(f), "freshness": analytics.freshness()}


@router.get("/usage/models", summary="Breakdown by provider and model",
            description="The `limit` provider and model pairs with the most interactions, most first; `other` sums "
                        "every other pair (how many `models`, and their interactions, tokens and cost; no latency), "
                        "or is null when there are no others. The rows and `other` add up to the totals.")
def models(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
           provider: str | None = None, model: str | None = None, user: UserId = None,
           limit: Annotated[int, Query(ge=1, le=500, description="Models listed (at most 500)")] = 100) -> dict:
    analytics = _analytics(request)
    f = _filters(request, token, start, end, app, provider, model, user)
    return {**analytics.queries().usage_by_model(f, limit=limit), "freshness": analytics.freshness()}


@router.get("/usage/top-users", summary="The users with the most tokens or cost in the range")
def top_users(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
              sort: Literal["tokens", "cost", "interactions"] = "tokens", limit: Limit = 10) -> dict:
    analytics = _analytics(request)
    f = _filters(request, token, start, end, app, None, None, None)
    column = {"tokens": "total_tokens", "cost": "cost", "interactions": "interactions"}[sort]
    return {"users": analytics.queries().top_users(f, column, limit), "freshness": analytics.freshness()}


@router.get("/usage/active-users", summary="Distinct active users per day, week or month",
            description=f"One row per local bucket with data, oldest first; {SERIES}.")
def active_users(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
                 granularity: str = Query("day", description="day, week or month")) -> dict:
    analytics = _analytics(request)
    f = _filters(request, token, start, end, app, None, None, None)
    granularity = _granularity(granularity, GRANULARITIES[1:], f)
    return {"granularity": granularity, "series": analytics.queries().active_users(f, granularity),
            "freshness": analytics.freshness()}


@router.get("/users", summary="Users active in the range (every user without from/to): search, sort, pages")
def list_users(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
               provider: str | None = None, model: str | None = None, user: UserId = None,
               search: str | None = None, sort: Literal["tokens", "cost", "last_seen", "interactions"] = "last_seen",
               cursor: Cursor = None, limit: Limit = 50) -> dict:
    f = _filters(request, token, start, end, app, provider, model, user)
    if start is None and end is None:
        f = replace(f, start_ms=0, end_ms=END_OF_TIME_MS)
    analytics = _analytics(request)
    page = listings.users(analytics.warehouse.cursor(), f=f, zone=analytics.settings.analytics_timezone,
                          search=search, sort=sort, after=_cursor(cursor, listings.USER_CURSORS[sort]), limit=limit)
    return {**page, "freshness": analytics.freshness()}


@router.get("/sessions", summary="Sessions overlapping the range, newest first",
            description=f"`models` names a session's first {listings.MODELS_SHOWN} models; `models_more` counts "
                        "the rest.")
def list_sessions(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
                  provider: str | None = None, model: str | None = None, user: UserId = None,
                  cursor: Cursor = None, limit: Limit = 50) -> dict:
    f = _filters(request, token, start, end, app, provider, model, user)
    analytics = _analytics(request)
    page = listings.sessions(analytics.warehouse.cursor(), f=f, after=_cursor(cursor, listings.SESSION_CURSOR),
                             limit=limit)
    return {**page, "freshness": analytics.freshness()}


@router.get("/interactions", summary="Interactions in the range, newest first")
def list_interactions(request: Request, token: ReadTokenDep, start: From = None, end: To = None, app: AppId = None,
                      provider: str | None = None, model: str | None = None, user: UserId = None,
                      session: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Session id")] = None,
                      cursor: Cursor = None, limit: Limit = 50) -> dict:
    f = _filters(request, token, start, end, app, provider, model, user)
    analytics = _analytics(request)
    page = listings.interactions(analytics.warehouse.cursor(), f=f, session_id=session,
                                 after=_cursor(cursor, listings.INTERACTION_CURSOR), limit=limit)
    return {**page, "freshness": analytics.freshness()}


@router.get("/analytics/status", summary="How fresh the analytics are")
def status(request: Request, _: ReadTokenDep) -> dict:
    return _analytics(request).freshness()

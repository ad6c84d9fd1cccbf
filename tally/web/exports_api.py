"""The exports API (`/api/v1/exports`, bearer read token): CSV downloads streamed without a row cap, and schedules."""

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from tally.analytics.filters import FilterError, parse_filters, parse_id
from tally.exports.csv_files import download_name, stream_csv
from tally.exports.datasets import DatasetError, find_dataset
from tally.exports.schedules import (
    ScheduleError,
    ScheduleLimits,
    add_schedule,
    list_schedules,
    recent_runs,
    remove_schedule,
)
from tally.store import audit
from tally.store.app_access import app_ids
from tally.store.limits import MAX_ID
from tally.store.models import ReadToken, id_of
from tally.web.analytics_api import AppId, From, To, UserId
from tally.web.deps import ExportTokenDep, ReadTokenDep, SessionDep, client_address, write_transaction
from tally.web.errors import ApiError, error_responses

router = APIRouter(prefix="/api/v1/exports", tags=["exports"], responses=error_responses(400, 401, 403, 404, 422, 503))
RunLimit = Annotated[int, Query(ge=1, le=500, description="Most runs to return, newest first (at most 500)")]
ScheduleId = Annotated[int, Path(ge=1, le=MAX_ID, description="A schedule id")]  # any other is not found


class Run(BaseModel):
    id: int
    schedule_id: int
    period: str = Field(description="The period exported: 2026-11-24T13, 2026-11-24, 2026-W47, 2026-11 or 2026")
    period_start: int = Field(description="Epoch ms, inclusive")
    period_end: int = Field(description="Epoch ms, exclusive")
    started_at: int
    finished_at: int | None
    status: Literal["running", "succeeded", "failed"]
    rows: int | None
    bytes: int | None
    file: str | None
    error: str | None
    replica: str | None = Field(description="The server process that wrote it (TALLY_REPLICA, else host:pid)")


class Schedule(BaseModel):
    id: int
    dataset: str
    cron: str
    timezone: str
    app_id: int | None
    app: str | None = Field(description="The app's name")
    directory: str = Field(description="Absolute, or relative to the exports folder (TALLY_EXPORTS_DIR)")
    include_raw: bool
    period: Literal["hour", "day", "week", "month", "year"] = Field(description="What each run exports")
    created_at: int
    next_run_at: int | None
    last_run: Run | None


class SchedulePage(BaseModel):
    schedules: list[Schedule]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class NewSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Literal["interactions", "sessions", "users", "daily_usage"]
    cron: str = Field(description="A 5-field crontab, as cron reads it", examples=["0 2 * * *"])
    timezone: str | None = Field(None, description="IANA zone of the crontab and periods; default the analytics one")
    app: int | None = Field(None, ge=1, le=MAX_ID, description="Only this app's rows (an app id)")
    directory: str | None = Field(None, description="Inside the exports folder (TALLY_EXPORTS_DIR); default that "
                                                    "folder itself")
    include_raw: bool = Field(False, description="Interactions only: add the raw request and response JSON")


@router.get("/{dataset}.csv", summary="A dataset as CSV, streamed: interactions, sessions, users or daily_usage",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "RFC 4180 CSV, UTF-8, one header row"}})
def download(request: Request, dataset: str, db: SessionDep, token: ReadTokenDep, start: From = None, end: To = None,
             app: AppId = None, provider: str | None = None, model: str | None = None, user: UserId = None,
             include_raw: Annotated[bool, Query(description="Interactions only: raw request and response")] = False,
             ) -> StreamingResponse:
    given = {name for name, value in (("app", app), ("provider", provider), ("model", model), ("user", user))
             if value is not None}
    try:
        definition = find_dataset(dataset, filters=given, include_raw=include_raw)
    except DatasetError as error:
        status, code = (404, "not_found") if error.field == "dataset" else (400, "invalid_filter")
        raise ApiError(status, code, str(error), [{"field": error.field, "message": str(error)}]) from None
    analytics = request.app.state.analytics
    try:
        f = parse_filters(start=start, end=end, app=app, provider=provider, model=model, user=user,
                          zone=analytics.zone, now_ms=time.time_ns() // 1_000_000, apps=app_ids(token.apps))
    except FilterError as error:
        raise ApiError(400, "invalid_filter", str(error), [{"field": error.field, "message": str(error)}]) from None
    db.commit()  # the token check's transaction must not stay open for as long as the download runs
    name = download_name(definition.name, f, analytics.zone)
    chunks = stream_csv(definition, warehouse=analytics.warehouse, engine=request.app.state.engine, f=f,
                        include_raw=include_raw)
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.get("/schedules", summary="Export schedules by id, each with its next run time and its last run")
def schedules_list(db: SessionDep, token: ReadTokenDep,
                   cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
                   limit: Annotated[int, Query(ge=1, le=500, description="Schedules per page (at most 500)")] = 100,
                   ) -> SchedulePage:
    try:
        after = parse_id("cursor", cursor) or 0
    except FilterError as error:
        raise ApiError(400, "invalid_filter", str(error), [{"field": error.field, "message": str(error)}]) from None
    found = list_schedules(db, after_id=after, limit=limit + 1, apps=app_ids(token.apps))
    more = len(found) > limit
    return SchedulePage(schedules=found[:limit], next_cursor=str(found[limit - 1]["id"]) if more else None)


@router.post("/schedules", status_code=201, summary="Add an export schedule; the server runs it from now on",
             response_model=Schedule)
def create_schedule(body: NewSchedule, request: Request, token: ExportTokenDep) -> dict:
    settings = request.app.state.settings
    with write_transaction(request) as db:
        try:
            added = id_of(add_schedule(db, dataset=body.dataset, cron=body.cron,
                                 timezone_name=body.timezone or settings.analytics_timezone, app_id=body.app,
                                 directory=body.directory, include_raw=body.include_raw,
                                 exports_dir=settings.exports_folder, limits=ScheduleLimits.of(settings),
                                 now_ms=time.time_ns() // 1_000_000, actor=audit.token_actor(token),
                                 address=client_address(request), apps=app_ids(token.apps)))
        except ScheduleError as error:
            raise ApiError(422, "invalid_schedule", str(error),
                           [{"field": error.field, "message": str(error)}]) from None
    return _find(request, added, token)


@router.get("/schedules/{schedule_id}", summary="One export schedule", response_model=Schedule)
def get_schedule(schedule_id: ScheduleId, request: Request, token: ReadTokenDep) -> dict:
    return _find(request, schedule_id, token)


@router.delete("/schedules/{schedule_id}", status_code=204, summary="Remove a schedule and its run history")
def delete_schedule(schedule_id: ScheduleId, request: Request, token: ExportTokenDep) -> Response:
    with write_transaction(request) as db:
        if not remove_schedule(db, schedule_id=schedule_id, actor=audit.token_actor(token),
                               address=client_address(request), apps=app_ids(token.apps)):
            raise HTTPException(404, f"no export schedule {schedule_id}")
    return Response(status_code=204)


@router.get("/schedules/{schedule_id}/runs", summary="A schedule's runs, newest first",
            response_model=dict[str, list[Run]])
def schedule_runs(schedule_id: ScheduleId, db: SessionDep, token: ReadTokenDep, limit: RunLimit = 50) -> dict:
    apps = app_ids(token.apps)
    if not list_schedules(db, schedule_id=schedule_id, apps=apps):
        raise HTTPException(404, f"no export schedule {schedule_id}")
    return {"runs": recent_runs(db, schedule_id=schedule_id, limit=limit, apps=apps)}


@router.get("/runs", summary="The latest runs of every schedule, newest first", response_model=dict[str, list[Run]])
def runs_list(db: SessionDep, token: ReadTokenDep, limit: RunLimit = 50) -> dict:
    return {"runs": recent_runs(db, limit=limit, apps=app_ids(token.apps))}


def _find(request: Request, schedule_id: int, token: ReadToken) -> dict:
    with Session(request.app.state.engine) as db:
        found = list_schedules(db, schedule_id=schedule_id, apps=app_ids(token.apps))
    if not found:
        raise HTTPException(404, f"no export schedule {schedule_id}")
    return found[0]

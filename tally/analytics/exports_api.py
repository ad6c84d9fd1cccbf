"""The exports API (`/api/v1/exports`, bearer read token): CSV downloads streamed without a row cap, and schedules."""

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from tally.analytics.api import AppId, From, To, UserId
from tally.analytics.export_datasets import DatasetError, find_dataset
from tally.analytics.export_schedules import ScheduleError, add_schedule, list_schedules, recent_runs, remove_schedule
from tally.analytics.exports import iso_utc, stream_csv
from tally.analytics.filters import FilterError, parse_filters
from tally.store.deps import ReadTokenDep, SessionDep, write_transaction
from tally.store.errors import ApiError

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])
RunLimit = Annotated[int, Query(ge=1, le=500, description="Most runs to return, newest first")]


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


class Schedule(BaseModel):
    id: int
    dataset: str
    cron: str
    timezone: str
    app_id: int | None
    app: str | None = Field(description="The app's name")
    directory: str = Field(description="Absolute, or relative to the data directory")
    include_raw: bool
    period: Literal["hour", "day", "week", "month", "year"] = Field(description="What each run exports")
    created_at: int
    next_run_at: int | None
    last_run: Run | None


class NewSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Literal["interactions", "sessions", "users", "daily_usage"]
    cron: str = Field(description="A 5-field crontab, as cron reads it", examples=["0 2 * * *"])
    timezone: str | None = Field(None, description="IANA zone of the crontab and periods; default the analytics one")
    app: int | None = Field(None, description="Only this app's rows (an app id)")
    directory: str | None = Field(None, description="Inside the data directory; default `exports`")
    include_raw: bool = Field(False, description="Interactions only: add the raw request and response JSON")


@router.get("/{dataset}.csv", summary="A dataset as CSV, streamed: interactions, sessions, users or daily_usage",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "RFC 4180 CSV, UTF-8, one header row"}})
def download(request: Request, dataset: str, db: SessionDep, _: ReadTokenDep, start: From = None, end: To = None,
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
                          zone=analytics.zone, now_ms=time.time_ns() // 1_000_000)
    except FilterError as error:
        raise ApiError(400, "invalid_filter", str(error), [{"field": error.field, "message": str(error)}]) from None
    db.commit()  # the token check's transaction must not stay open for as long as the download runs
    name = f"{definition.name}_{iso_utc(f.start_ms)[:10]}_{iso_utc(f.end_ms - 1)[:10]}.csv"
    chunks = stream_csv(definition, warehouse=analytics.warehouse, engine=request.app.state.engine, f=f,
                        include_raw=include_raw)
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.get("/schedules", summary="Export schedules, each with its next run time and its last run")
def schedules_list(db: SessionDep, _: ReadTokenDep) -> dict[str, list[Schedule]]:
    return {"schedules": list_schedules(db)}


@router.post("/schedules", status_code=201, summary="Add an export schedule; the server runs it from now on")
def create_schedule(body: NewSchedule, request: Request, _: ReadTokenDep) -> Schedule:
    settings = request.app.state.settings
    with write_transaction(request) as db:
        try:
            added = add_schedule(db, dataset=body.dataset, cron=body.cron,
                                 timezone_name=body.timezone or settings.analytics_timezone, app_id=body.app,
                                 directory=body.directory, include_raw=body.include_raw, data_dir=settings.data_dir,
                                 confined=True, now_ms=time.time_ns() // 1_000_000).id
        except ScheduleError as error:
            raise ApiError(422, "invalid_schedule", str(error),
                           [{"field": error.field, "message": str(error)}]) from None
    _reschedule(request)
    return _find(request, added)


@router.get("/schedules/{schedule_id}", summary="One export schedule")
def get_schedule(schedule_id: int, request: Request, _: ReadTokenDep) -> Schedule:
    return _find(request, schedule_id)


@router.delete("/schedules/{schedule_id}", status_code=204, summary="Remove a schedule and its run history")
def delete_schedule(schedule_id: int, request: Request, _: ReadTokenDep) -> Response:
    with write_transaction(request) as db:
        if not remove_schedule(db, schedule_id=schedule_id):
            raise HTTPException(404, f"no export schedule {schedule_id}")
    _reschedule(request)
    return Response(status_code=204)


@router.get("/schedules/{schedule_id}/runs", summary="A schedule's runs, newest first")
def schedule_runs(schedule_id: int, db: SessionDep, _: ReadTokenDep, limit: RunLimit = 50) -> dict[str, list[Run]]:
    return {"runs": recent_runs(db, schedule_id=schedule_id, limit=limit)}


@router.get("/runs", summary="The latest runs of every schedule, newest first")
def runs_list(db: SessionDep, _: ReadTokenDep, limit: RunLimit = 50) -> dict[str, list[Run]]:
    return {"runs": recent_runs(db, limit=limit)}


def _reschedule(request: Request) -> None:
    changed = getattr(request.app.state, "export_schedules_changed", None)
    if changed is not None:
        changed()


def _find(request: Request, schedule_id: int) -> dict:
    with Session(request.app.state.engine) as db:
        found = [schedule for schedule in list_schedules(db) if schedule["id"] == schedule_id]
    if not found:
        raise HTTPException(404, f"no export schedule {schedule_id}")
    return found[0]

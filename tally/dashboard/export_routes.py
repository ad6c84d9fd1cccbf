"""The dashboard's exports: any filtered view as a CSV download, and the export schedules with their history
(admins may add and remove schedules)."""

import time
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from tally.analytics.filters import FilterError, parse_id
from tally.dashboard.routes import page_response, view_of
from tally.dashboard.web_session import AccountDep, check_csrf
from tally.exports.csv_files import download_name, stream_csv
from tally.exports.datasets import DATASETS, DatasetError, find_dataset
from tally.exports.schedules import (
    ScheduleError,
    ScheduleLimits,
    add_schedule,
    list_schedules,
    recent_runs,
    remove_schedule,
)
from tally.store import audit
from tally.store.accounts import may
from tally.store.app_access import app_ids
from tally.store.limits import MAX_ID
from tally.web.deps import SessionDep, client_address, write_transaction

router = APIRouter(prefix="/dashboard/exports", include_in_schema=False)
SCHEDULES_SHOWN = 100  # the command line and the API list every schedule


def _exports_page(request: Request, account, db, *, error: dict | None = None, form: dict | None = None,
                  status: int = 200) -> Response:
    apps = app_ids(account.apps)
    schedules = list_schedules(db, limit=SCHEDULES_SHOWN + 1, apps=apps)
    response = page_response(
        request, account, "exports.html", "exports", view_of(request, account), datasets=list(DATASETS),
        may_export=may(account, "analyst"), schedules=schedules[:SCHEDULES_SHOWN],
        more_schedules=len(schedules) > SCHEDULES_SHOWN, runs=recent_runs(db, limit=50, apps=apps), error=error,
        form=form or {"cron": "0 2 * * *", "timezone": request.app.state.settings.analytics_timezone,
                      "directory": "exports"})
    response.status_code = status
    return response


@router.get("")
def exports(request: Request, account: AccountDep, db: SessionDep) -> Response:
    return _exports_page(request, account, db)


@router.get("/{dataset}.csv")
def download(request: Request, account: AccountDep, db: SessionDep, dataset: str) -> Response:
    """The page's filters as a CSV file, streamed (the same rows as GET /api/v1/exports/DATASET.csv); an analyst's
    or an admin's."""
    if not may(account, "analyst"):
        raise HTTPException(403, "only an analyst or an admin may download CSV files; a viewer sees the pages")
    view = view_of(request, account)
    try:
        definition = find_dataset(dataset)
    except DatasetError as error:
        raise HTTPException(404, str(error)) from None
    db.commit()  # the login check's transaction must not stay open for as long as the download runs
    f = view.filters
    name = download_name(definition.name, f, request.app.state.analytics.zone)
    chunks = stream_csv(definition, warehouse=request.app.state.analytics.warehouse,
                        engine=request.app.state.engine, f=f)
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.post("/schedules")
def create(request: Request, account: AccountDep, db: SessionDep, csrf: Annotated[str, Form()] = "",
           dataset: Annotated[str, Form()] = "", cron: Annotated[str, Form()] = "",
           timezone: Annotated[str, Form()] = "", app: Annotated[str, Form()] = "",
           directory: Annotated[str, Form()] = "", include_raw: Annotated[bool, Form()] = False) -> Response:
    check_csrf(request, csrf)
    form = {"dataset": dataset, "cron": cron, "timezone": timezone, "app": app, "directory": directory,
            "include_raw": include_raw}
    if not may(account, "analyst"):
        return _exports_page(request, account, db, form=form, status=403,
                             error={"field": "account", "message": "only an analyst or an admin may add export "
                                                                  "schedules"})
    try:
        app_id = parse_id("app", app)
    except FilterError as error:
        return _exports_page(request, account, db, form=form, status=422,
                             error={"field": error.field, "message": str(error)})
    try:
        with write_transaction(request) as writer:
            add_schedule(writer, dataset=dataset, cron=cron, timezone_name=timezone or "UTC",
                         app_id=app_id, directory=directory, include_raw=include_raw,
                         exports_dir=request.app.state.settings.exports_folder,
                         limits=ScheduleLimits.of(request.app.state.settings),
                         now_ms=time.time_ns() // 1_000_000, actor=audit.account_actor(account.email),
                         address=client_address(request), apps=app_ids(account.apps))
    except ScheduleError as error:
        return _exports_page(request, account, db, form=form, status=422,
                             error={"field": error.field, "message": str(error)})
    return RedirectResponse("/dashboard/exports", status_code=303)


@router.post("/schedules/{schedule_id}/remove")
def remove(request: Request, account: AccountDep, db: SessionDep, schedule_id: Annotated[int, Path(ge=1, le=MAX_ID)],
           csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    if not may(account, "analyst"):
        return _exports_page(request, account, db, status=403,
                             error={"field": "account", "message": "only an analyst or an admin may remove export "
                                                                  "schedules"})
    with write_transaction(request) as writer:
        remove_schedule(writer, schedule_id=schedule_id, actor=audit.account_actor(account.email),
                        address=client_address(request), apps=app_ids(account.apps))
    return RedirectResponse("/dashboard/exports", status_code=303)

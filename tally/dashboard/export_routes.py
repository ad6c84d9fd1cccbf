"""The dashboard's exports: any filtered view as a CSV download, and the export schedules with their history
(admins may add and remove schedules)."""

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from tally.analytics.export_datasets import DATASETS, DatasetError, find_dataset
from tally.analytics.export_schedules import ScheduleError, add_schedule, list_schedules, recent_runs, remove_schedule
from tally.analytics.exports import iso_utc, stream_csv
from tally.dashboard.routes import page_response, view_of
from tally.dashboard.web_session import AccountDep, check_csrf
from tally.store.deps import SessionDep, write_transaction

router = APIRouter(prefix="/dashboard/exports", include_in_schema=False)


def _exports_page(request: Request, account, db, *, error: dict | None = None, form: dict | None = None,
                  status: int = 200) -> Response:
    response = page_response(request, account, "exports.html", "exports", view_of(request), datasets=list(DATASETS),
                     schedules=list_schedules(db), runs=recent_runs(db, limit=50), error=error,
                     form=form or {"cron": "0 2 * * *", "timezone": request.app.state.settings.analytics_timezone,
                                   "directory": "exports"})
    response.status_code = status
    return response


@router.get("")
def exports(request: Request, account: AccountDep, db: SessionDep) -> Response:
    return _exports_page(request, account, db)


@router.get("/{dataset}.csv")
def download(request: Request, _: AccountDep, db: SessionDep, dataset: str) -> Response:
    """The page's filters as a CSV file, streamed (the same rows as GET /api/v1/exports/DATASET.csv)."""
    view = view_of(request)
    try:
        definition = find_dataset(dataset)
    except DatasetError as error:
        return Response(str(error), status_code=404, media_type="text/plain")
    db.commit()  # the login check's transaction must not stay open for as long as the download runs
    f = view.filters
    name = f"{definition.name}_{iso_utc(f.start_ms)[:10]}_{iso_utc(f.end_ms - 1)[:10]}.csv"
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
    if not account.is_admin:
        return _exports_page(request, account, db, form=form, status=403,
                             error={"field": "account", "message": "only an admin may add export schedules"})
    try:
        with write_transaction(request) as writer:
            add_schedule(writer, dataset=dataset, cron=cron, timezone_name=timezone or "UTC",
                         app_id=int(app) if app.isdigit() else None, directory=directory, include_raw=include_raw,
                         data_dir=request.app.state.settings.data_dir, confined=True,
                         now_ms=time.time_ns() // 1_000_000)
    except ScheduleError as error:
        return _exports_page(request, account, db, form=form, status=422,
                             error={"field": error.field, "message": str(error)})
    request.app.state.export_schedules_changed()
    return RedirectResponse("/dashboard/exports", status_code=303)


@router.post("/schedules/{schedule_id}/remove")
def remove(request: Request, account: AccountDep, db: SessionDep, schedule_id: int,
           csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    if not account.is_admin:
        return _exports_page(request, account, db, status=403,
                             error={"field": "account", "message": "only an admin may remove export schedules"})
    with write_transaction(request) as writer:
        remove_schedule(writer, schedule_id=schedule_id)
    request.app.state.export_schedules_changed()
    return RedirectResponse("/dashboard/exports", status_code=303)

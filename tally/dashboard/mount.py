"""Mounting the dashboard on the app: its routes, static files, cookie signer and login redirects."""

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from tally.dashboard import (
    access_routes,
    alert_routes,
    audit_routes,
    budget_routes,
    export_routes,
    login_routes,
    routes,
)
from tally.dashboard.errors import error_page
from tally.dashboard.routes import StoreViews
from tally.dashboard.web_session import CsrfRejected, LoginRequired
from tally.store.settings import Settings
from tally.web.errors import handle


def mount_dashboard(app: FastAPI, settings: Settings, store_views: StoreViews) -> None:
    app.state.store_views = store_views
    app.include_router(login_routes.router)
    # Registered before the static mount, so that the versioned plotly.js route is not shadowed by it.
    app.include_router(routes.router)
    app.include_router(export_routes.router)
    app.include_router(budget_routes.router)
    app.include_router(alert_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(access_routes.router)
    app.mount("/dashboard/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    handle(app, LoginRequired, _to_login)
    handle(app, CsrfRejected, _csrf_rejected)


async def _to_login(_: Request, exc: LoginRequired) -> Response:
    return RedirectResponse("/login?" + urlencode({"next": exc.next_url}), status_code=303)


async def _csrf_rejected(request: Request, exc: CsrfRejected) -> Response:
    return await run_in_threadpool(error_page, request, 403, "Form rejected", str(exc))

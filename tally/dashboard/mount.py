"""Mounting the dashboard on the app: its routes, static files, cookie signer and error pages."""

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tally.analytics.filters import FilterError
from tally.dashboard import export_routes, login_routes, routes
from tally.dashboard.rendering import render
from tally.dashboard.routes import StoreViews
from tally.dashboard.web_session import CookieSigner, CsrfRejected, LoginRequired, load_secret
from tally.store.settings import Settings


def mount_dashboard(app: FastAPI, settings: Settings, store_views: StoreViews) -> None:
    app.state.cookie_signer = CookieSigner(load_secret(settings), settings.login_hours)
    app.state.login_throttle = login_routes.LoginThrottle()
    app.state.store_views = store_views
    app.include_router(login_routes.router)
    # Registered before the static mount, so that the versioned plotly.js route is not shadowed by it.
    app.include_router(routes.router)
    app.include_router(export_routes.router)
    app.mount("/dashboard/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.add_exception_handler(FilterError, _bad_filter)


async def _to_login(_: Request, exc: LoginRequired) -> Response:
    return RedirectResponse("/login?" + urlencode({"next": exc.next_url}), status_code=303)


async def _csrf_rejected(request: Request, exc: CsrfRejected) -> Response:
    return render(request, "error.html", {"account": None, "view": None, "active": "", "title": "Form rejected",
                                          "message": str(exc)}, status=403)


async def _bad_filter(request: Request, exc: FilterError) -> Response:
    """A filter in the URL that cannot be read: say which, and offer the page without filters."""
    return render(request, "error.html", {
        "account": None, "view": None, "active": "", "title": "That filter cannot be read",
        "message": f"{exc.field}: {exc}", "reset": request.url.path}, status=400)

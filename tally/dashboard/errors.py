"""The dashboard's error page, for anything that goes wrong under its paths, with the navigation kept."""

import logging

from fastapi import Request
from sqlmodel import Session
from starlette.responses import HTMLResponse, Response

from tally.dashboard.rendering import SECURITY_HEADERS, render
from tally.dashboard.web_session import LOGIN_COOKIE, signer
from tally.store.accounts import find_login

log = logging.getLogger(__name__)
_PREFIXES = ("/dashboard", "/login", "/logout")


def is_dashboard_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in _PREFIXES)


def _account(request: Request):
    """Who is logged in, if anyone can tell: the page keeps its navigation; an error must not cause another."""
    try:
        token = signer(request).login_token(request.cookies.get(LOGIN_COOKIE))
        if not token:
            return None
        with Session(request.app.state.engine) as db:
            account = find_login(db, token=token)
            if account is not None:
                db.expunge(account)
            return account
    except Exception:  # the store itself may be what failed
        return None


def error_page(request: Request, status: int, title: str, message: str, *, reset: str | None = None) -> Response:
    """The error page; a plain one if even that cannot be rendered (the warehouse may be what failed)."""
    try:
        return render(request, "error.html", {"account": _account(request), "view": None, "active": "",
                                              "nav": True, "title": title, "message": message, "reset": reset},
                      status=status)
    except Exception:
        log.exception("the error page could not be rendered")
        return HTMLResponse(f"<!doctype html><title>{status}</title><h1>{status}</h1>"
                            f'<p><a href="/dashboard">Back to the dashboard</a></p>', status_code=status,
                            headers=SECURITY_HEADERS)

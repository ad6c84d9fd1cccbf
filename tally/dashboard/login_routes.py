"""Logging in and out of the dashboard: the login form, its throttle, and the login cookie."""

import math
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tally.dashboard import throttle
from tally.dashboard.rendering import render
from tally.dashboard.web_session import LOGIN_COOKIE, check_csrf, local_path, set_cookie, signer
from tally.store import audit
from tally.store.accounts import authenticate, end_login, start_login
from tally.store.models import id_of
from tally.store.secrets import now_ms
from tally.web.deps import SessionDep, WritingSessionDep, client_address, write_transaction

router = APIRouter(include_in_schema=False)


def _login_page(request: Request, *, next_url: str, email: str = "", error: str | None = None,
                status: int = 200) -> Response:
    return render(request, "login.html", {"next": next_url, "email": email, "error": error, "account": None,
                                          "view": None, "active": ""}, status=status)


def _spelled(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next_url=local_path(next))


@router.post("/login")
def login(request: Request, db: SessionDep, email: Annotated[str, Form()] = "",
          password: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "/dashboard") -> Response:
    check_csrf(request, csrf)
    next_url = local_path(next)
    engine, address = request.app.state.engine, client_address(request)
    wait_ms = throttle.attempt(engine, address=address, email=email, now=now_ms())
    if wait_ms:  # refused before any check, and not audited: a flood of these must not fill the trail
        wait = math.ceil(wait_ms / 1000)
        page = _login_page(request, next_url=next_url, email=email, status=429,
                           error=f"Too many attempts; try again in {_spelled(wait)}.")
        page.headers["Retry-After"] = str(wait)
        return page
    account, new_hash = authenticate(db, email=email, password=password)
    if account is None:
        _audit_failed_login(request, email, address)
        return _login_page(request, next_url=next_url, email=email, error="Wrong email or password.", status=401)
    throttle.succeeded(engine, address=address, email=email)
    with write_transaction(request) as writer:
        token = start_login(writer, account_id=id_of(account), hours=request.app.state.settings.login_hours,
                            new_hash=new_hash)
        audit.record(writer, actor=audit.account_actor(account.email), action="login", address=address)
    response = RedirectResponse(next_url, status_code=303)
    set_cookie(request, response, LOGIN_COOKIE, signer(request).sign_login(token), max_age=signer(request).max_age)
    return response


def _audit_failed_login(request: Request, email: str, address: str) -> None:
    """A login refused for its password, in a transaction of its own (nothing else is written for it); the
    throttle bounds how often (each such attempt costs an Argon2 check). The email is as typed: it may name no
    account."""
    with write_transaction(request) as writer:
        audit.record(writer, actor=f"login:{email.strip()[:200]}", action="login.failed", address=address)


@router.post("/logout")
def logout(request: Request, db: WritingSessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    token = signer(request).login_token(request.cookies.get(LOGIN_COOKIE))
    if token:
        end_login(db, token=token)
    response = RedirectResponse("/login?" + urlencode({"next": "/dashboard"}), status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response

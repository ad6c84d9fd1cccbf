"""Logging in and out of the dashboard: the login form, its throttle, and the login cookie."""

import threading
import time
from collections import defaultdict, deque
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tally.dashboard.accounts import authenticate, end_login, start_login
from tally.dashboard.rendering import render
from tally.dashboard.web_session import LOGIN_COOKIE, check_csrf, local_path, set_cookie, signer
from tally.store.deps import WritingSessionDep

router = APIRouter(include_in_schema=False)


class LoginThrottle:
    """At most `attempts` failed logins per email and per client address in `window` seconds."""

    def __init__(self, attempts: int = 10, window: float = 900) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def wait_seconds(self, *keys: str) -> int:
        """0 when a login may be tried now, else how long until it may."""
        now = time.monotonic()
        with self._lock:
            waits = [failures[0] + self.window - now for key in keys
                     if len(failures := self._recent(key, now)) >= self.attempts]
        return int(max(waits, default=0)) + (1 if waits else 0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, email_key: str) -> None:
        with self._lock:
            self._failures.pop(email_key, None)


def _login_page(request: Request, *, next_url: str, email: str = "", error: str | None = None,
                status: int = 200) -> Response:
    return render(request, "login.html", {"next": next_url, "email": email, "error": error, "account": None,
                                          "view": None, "active": ""}, status=status)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next_url=local_path(next))


@router.post("/login")
def login(request: Request, db: WritingSessionDep, email: Annotated[str, Form()] = "",
          password: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "/dashboard") -> Response:
    check_csrf(request, csrf)
    next_url = local_path(next)
    throttle: LoginThrottle = request.app.state.login_throttle
    keys = (f"email:{email.strip().lower()}", f"client:{request.client.host if request.client else '?'}")
    wait = throttle.wait_seconds(*keys)
    if wait:
        return _login_page(request, next_url=next_url, email=email, status=429,
                           error=f"Too many failed attempts; try again in {wait // 60 + 1} minutes.")
    account = authenticate(db, email=email, password=password)
    if account is None:
        throttle.failed(*keys)
        return _login_page(request, next_url=next_url, email=email, error="Wrong email or password.", status=401)
    throttle.succeeded(keys[0])
    token = start_login(db, account=account, hours=request.app.state.settings.login_hours)
    response = RedirectResponse(next_url, status_code=303)
    set_cookie(request, response, LOGIN_COOKIE, signer(request).sign_login(token), max_age=signer(request).max_age)
    return response


@router.post("/logout")
def logout(request: Request, db: WritingSessionDep, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    token = signer(request).login_token(request.cookies.get(LOGIN_COOKIE))
    if token:
        end_login(db, token=token)
    response = RedirectResponse("/login?" + urlencode({"next": "/dashboard"}), status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response

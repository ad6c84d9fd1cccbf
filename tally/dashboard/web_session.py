"""The browser side of dashboard access: the signed login cookie, CSRF tokens, and the logged-in guard."""

import hashlib
import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine
from starlette.responses import Response

from tally.store.accounts import find_login
from tally.store.models import DashboardAccount
from tally.store.secrets import shared_secret
from tally.store.settings import Settings
from tally.web.deps import SessionDep

LOGIN_COOKIE = "tally_login"
CSRF_COOKIE = "tally_csrf"


class LoginRequired(Exception):
    """Raised by the guard; answered with a redirect to the login page that comes back to `next_url`."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRejected(Exception):
    """A form post without a valid CSRF token, or from another origin."""


def cookie_signer(settings: Settings, engine: Engine) -> "CookieSigner":
    """The signer of this installation: `TALLY_SECRET_KEY`, else a key made once and kept in the store, so that
    a cookie or form token from one replica is good on every other."""
    secret = settings.secret_key or shared_secret(engine, name="cookies",
                                                  legacy_file=settings.data_dir / "secret-key")
    return CookieSigner(secret, settings.login_hours)


class CookieSigner:
    def __init__(self, secret: str, login_hours: float) -> None:
        self._secret = secret.encode()
        self._logins = URLSafeTimedSerializer(secret, salt="tally-login")
        self.max_age = int(login_hours * 3600)

    def sign_login(self, token: str) -> str:
        return self._logins.dumps(token)

    def login_token(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            return self._logins.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None

    def csrf_token(self, nonce: str) -> str:
        """The form token for a browser's CSRF cookie: an HMAC, so a page of another site cannot make one."""
        return hmac.new(self._secret, b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


def signer(request: Request) -> CookieSigner:
    return request.app.state.cookie_signer


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")


def csrf_nonce(request: Request) -> str:
    """The browser's CSRF cookie value, made now (and set by `remember_csrf`) when it has none."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or len(nonce) > 100:
        nonce = request.state.new_csrf_nonce = secrets.token_urlsafe(24)
    return nonce


def remember_csrf(request: Request, response: Response) -> Response:
    new = getattr(request.state, "new_csrf_nonce", None)
    if new:
        set_cookie(request, response, CSRF_COOKIE, new, max_age=None)
    return response


def check_csrf(request: Request, submitted: str) -> None:
    """Both halves must agree: the token in the form and the HMAC of the cookie; the origin must be ours."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise CsrfRejected("the form was posted from another site")
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not hmac.compare_digest(signer(request).csrf_token(nonce), submitted or ""):
        raise CsrfRejected("the form's security token is missing or expired; reload the page and try again")


def local_path(url: str | None, default: str = "/dashboard") -> str:
    """`url` when it stays on this site (a path), else `default`: the login form never redirects elsewhere."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url


def current_account(request: Request, db: SessionDep) -> DashboardAccount:
    token = signer(request).login_token(request.cookies.get(LOGIN_COOKIE))
    account = find_login(db, token=token) if token else None
    if account is None:
        raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return account


AccountDep = Annotated[DashboardAccount, Depends(current_account)]

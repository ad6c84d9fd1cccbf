"""The Access page, for admins: dashboard accounts (role, apps, disable, delete) and API tokens (scope, apps,
expiry, revoke), changed as `tally users` and `tally tokens` change them, each change audited."""

import time
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import col, select

from tally.dashboard.routes import page_response
from tally.dashboard.web_session import AccountDep, check_csrf
from tally.store import access, audit
from tally.store.access import Actor
from tally.store.accounts import ROLES, AccountError, hash_password, may
from tally.store.app_access import UnknownApp
from tally.store.models import App, DashboardAccount
from tally.store.read_tokens import SCOPES, TokenError, list_tokens
from tally.web.deps import SessionDep, client_address, write_transaction

router = APIRouter(prefix="/dashboard/access", include_in_schema=False)
Text = Annotated[str, Form()]
Apps = Annotated[list[str], Form()]  # checked app names; none checked: every app


def _admin(account: DashboardAccount) -> None:
    if not may(account, "admin"):
        raise HTTPException(403, "only an admin may manage accounts and tokens")


def _page(request: Request, account: DashboardAccount, db, *, status: int = 200, error: dict | None = None,
          new_token: dict | None = None) -> Response:
    response = page_response(
        request, account, "access.html", "access", None, accounts=access.account_views(db),
        tokens=list_tokens(db), roles=ROLES, scopes=SCOPES, error=error, new_token=new_token,
        apps=db.exec(select(App).order_by(col(App.name))).all(),
        now=time.time_ns() // 1_000_000)
    response.status_code = status
    return response


def _refused(request: Request, account: DashboardAccount, db, error: Exception, field: str) -> Response:
    return _page(request, account, db, status=422, error={"field": getattr(error, "field", field),
                                                          "message": str(error)})


def _actor(request: Request, account: DashboardAccount) -> Actor:
    return Actor(audit.account_actor(account.email), client_address(request))


def _done() -> Response:
    return RedirectResponse("/dashboard/access", status_code=303)


@router.get("")
def access_page(request: Request, account: AccountDep, db: SessionDep) -> Response:
    _admin(account)
    return _page(request, account, db)


@router.post("/accounts")
def create_account(request: Request, account: AccountDep, db: SessionDep, csrf: Text = "", email: Text = "",
                   password: Text = "", role: Text = "viewer", app: Apps = []) -> Response:  # noqa: B006 (FastAPI)
    check_csrf(request, csrf)
    _admin(account)
    try:
        password_hash = hash_password(password)  # slow: before the transaction, which holds the write lock
        with write_transaction(request) as writer:
            access.create_account(writer, _actor(request, account), email=email, password_hash=password_hash,
                                  role=role, apps=app)
    except (AccountError, UnknownApp) as error:
        return _refused(request, account, db, error, "apps")
    return _done()


@router.post("/accounts/change")
def change_account(request: Request, account: AccountDep, db: SessionDep, csrf: Text = "", email: Text = "",
                   action: Text = "save", role: Text = "", app: Apps = []) -> Response:  # noqa: B006 (FastAPI)
    """`save` sets the role and apps (none checked: every app); `disable`, `enable` and `delete` do that."""
    check_csrf(request, csrf)
    _admin(account)
    if email.strip().lower() == account.email and action != "enable":
        return _refused(request, account, db, AccountError(
            "you cannot change, disable or delete your own account here (another admin, or `tally users`, can): "
            "an admin must not lock the last admin out"), "email")
    actor = _actor(request, account)
    try:
        with write_transaction(request) as writer:
            if action == "delete":
                access.delete_account(writer, actor, email)
            elif action in ("disable", "enable"):
                access.change_account(writer, actor, email, disabled=action == "disable")
            elif action == "save":
                access.change_account(writer, actor, email, role=role, apps=app)
            else:
                raise AccountError(f"unknown action {action!r}", "action")
    except (AccountError, UnknownApp) as error:
        return _refused(request, account, db, error, "apps")
    return _done()


@router.post("/tokens")
def create_token(request: Request, account: AccountDep, db: SessionDep, csrf: Text = "", name: Text = "",
                 scope: Text = "read", expires_in: Text = "", app: Apps = []) -> Response:  # noqa: B006 (FastAPI)
    """Shows the new token on the page, this once (only its hash is kept)."""
    check_csrf(request, csrf)
    _admin(account)
    try:
        days = _days(expires_in)
        if not name.strip():
            raise TokenError("a token needs a name", "name")
        with write_transaction(request) as writer:
            secret = access.create_token(writer, _actor(request, account), name=name.strip(), scope=scope, apps=app,
                                         expires_in_days=days)
    except (TokenError, UnknownApp) as error:
        return _refused(request, account, db, error, "apps")
    db.rollback()  # read the list anew: the token was written in a transaction of its own
    return _page(request, account, db, status=201, new_token={"name": name.strip(), "token": secret})


@router.post("/tokens/revoke")
def revoke_token(request: Request, account: AccountDep, db: SessionDep, csrf: Text = "",
                 prefix: Text = "") -> Response:
    check_csrf(request, csrf)
    _admin(account)
    try:
        with write_transaction(request) as writer:
            access.revoke_token(writer, _actor(request, account), prefix)
    except TokenError as error:
        return _refused(request, account, db, error, "prefix")
    return _done()


def _days(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise TokenError(f"{text[:40]!r} is not a number of days", "expires_in") from None

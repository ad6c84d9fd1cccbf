"""The admin API (bearer token of `admin` scope): API tokens, dashboard accounts and the audit trail, as the
`tally tokens`, `tally users` and `tally audit` commands manage them; every change is audited."""

import json
from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from tally.ingest.keys import AppError, find_app, set_limits
from tally.store import access, audit
from tally.store.access import Actor
from tally.store.accounts import AccountError, NoAccount, hash_password
from tally.store.app_access import UnknownApp
from tally.store.models import App, ReadToken, id_of
from tally.store.read_tokens import MAX_EXPIRY_DAYS, NoToken, TokenError, list_tokens
from tally.store.secrets import display_prefix
from tally.web.deps import AdminTokenDep, SessionDep, client_address, write_transaction
from tally.web.errors import ApiError, error_responses

router = APIRouter(prefix="/api/v1", tags=["admin"], responses=error_responses(400, 401, 403, 404, 422, 503))
Apps = Field(None, description="Names (or ids) of the apps it is limited to; null: every app")


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scope: Literal["read", "export", "admin"] = "read"
    apps: list[str] | None = Apps
    expires_in_days: float | None = Field(None, gt=0, le=MAX_EXPIRY_DAYS, description="Days until it stops working")


class Token(BaseModel):
    name: str
    prefix: str = Field(description="The start of the token, as shown in lists")
    scope: str
    apps: list[str] | None
    created_at: int
    last_used_at: int | None
    expires_at: int | None
    revoked_at: int | None


class CreatedToken(Token):
    token: str = Field(description="The secret, shown this once: only its hash is kept")


class NewAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    password: str = Field(min_length=8, max_length=1000)
    role: Literal["viewer", "analyst", "admin"] = "viewer"
    apps: list[str] | None = Apps


class AccountChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["viewer", "analyst", "admin"] | None = Field(None, description="Unchanged when left out")
    apps: list[str] | None = Field(None, description="Apps it is limited to ([] lifts the limit); unchanged "
                                                     "when left out")
    disabled: bool | None = Field(None, description="true logs its browsers out and stops its logins")


class Account(BaseModel):
    email: str
    role: str
    apps: list[str] | None
    created_at: int
    disabled_at: int | None


class AuditEvent(BaseModel):
    id: int
    at: int
    actor: str
    action: str
    target: str | None
    address: str | None
    detail: dict


def _refused(error: AccountError | TokenError | UnknownApp) -> ApiError:
    field = "apps" if isinstance(error, UnknownApp) else error.field
    return ApiError(422, "invalid_request", str(error), [{"field": field, "message": str(error)}])


def _actor(request: Request, admin: ReadToken) -> Actor:
    return Actor(audit.token_actor(admin), client_address(request))


@router.get("/tokens", summary="Every API token (never its secret)")
def tokens(db: SessionDep, _: AdminTokenDep) -> dict[str, list[Token]]:
    return {"tokens": [Token(**asdict(token)) for token in list_tokens(db)]}


@router.post("/tokens", status_code=201, summary="Create an API token; its secret is in this answer only")
def new_token(body: NewToken, request: Request, admin: AdminTokenDep) -> CreatedToken:
    with write_transaction(request) as db:
        try:
            secret = access.create_token(db, _actor(request, admin), name=body.name, scope=body.scope,
                                         apps=body.apps or [], expires_in_days=body.expires_in_days)
        except (TokenError, UnknownApp) as error:
            raise _refused(error) from None
        [made] = [token for token in list_tokens(db) if token.prefix == display_prefix(secret)]
    return CreatedToken(**asdict(made), token=secret)


@router.delete("/tokens/{name_or_prefix}", summary="Revoke the live tokens with this name, or the one with this prefix")
def revoke_token(name_or_prefix: Annotated[str, Path(max_length=200)], request: Request,
                 admin: AdminTokenDep) -> dict[str, int]:
    with write_transaction(request) as db:
        try:
            return {"revoked": access.revoke_token(db, _actor(request, admin), name_or_prefix)}
        except NoToken as error:
            raise HTTPException(404, str(error)) from None


@router.get("/accounts", summary="Every dashboard account")
def accounts(db: SessionDep, _: AdminTokenDep) -> dict[str, list[Account]]:
    return {"accounts": [Account(**asdict(view)) for view in access.account_views(db)]}


@router.post("/accounts", status_code=201, summary="Create a dashboard account")
def new_account(body: NewAccount, request: Request, admin: AdminTokenDep) -> Account:
    try:
        password_hash = hash_password(body.password)  # slow: before the transaction, which holds the write lock
    except AccountError as error:
        raise _refused(error) from None
    with write_transaction(request) as db:
        try:
            account = access.create_account(db, _actor(request, admin), email=body.email,
                                            password_hash=password_hash, role=body.role, apps=body.apps or [])
        except (AccountError, UnknownApp) as error:
            raise _refused(error) from None
        return Account(**asdict(access.view_of(db, account)))


@router.patch("/accounts/{email}", summary="Change an account's role, apps, or whether it is disabled")
def change_account(email: Annotated[str, Path(max_length=320)], body: AccountChange, request: Request,
                   admin: AdminTokenDep) -> Account:
    with write_transaction(request) as db:
        try:
            account = access.change_account(db, _actor(request, admin), email, role=body.role, apps=body.apps,
                                            disabled=body.disabled)
        except NoAccount as error:
            raise HTTPException(404, str(error)) from None
        except (AccountError, UnknownApp) as error:
            raise _refused(error) from None
        return Account(**asdict(access.view_of(db, account)))


@router.delete("/accounts/{email}", status_code=204, summary="Delete an account and its logins")
def remove_account(email: Annotated[str, Path(max_length=320)], request: Request, admin: AdminTokenDep) -> Response:
    with write_transaction(request) as db:
        try:
            access.delete_account(db, _actor(request, admin), email)
        except AccountError as error:  # no such account, or no email at all
            raise HTTPException(404, str(error)) from None
    return Response(status_code=204)


class AppLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_second: float | None = Field(None, ge=0, allow_inf_nan=False,
                                     description="Interactions a second; null: the server's default; 0: no limit")
    bytes_per_second: float | None = Field(None, ge=0, allow_inf_nan=False,
                                           description="Request bytes a second; null: the server's default")


class AppInfo(BaseModel):
    id: int
    name: str
    created_at: int
    max_per_second: float | None
    max_bytes_per_second: float | None
    redaction: dict | None = Field(description="The app's own redaction policy; null: the server's")
    raw_retention_days: int | None = Field(description="Days raw content is kept; null: forever")
    upload_retention_days: int | None = Field(description="Days images are kept; null: as the raw content")


def _app_info(app: App) -> AppInfo:
    return AppInfo(id=id_of(app), name=app.name, created_at=app.created_at, max_per_second=app.max_per_second,
                   max_bytes_per_second=app.max_bytes_per_second, redaction=app.redaction,
                   raw_retention_days=app.raw_retention_days, upload_retention_days=app.upload_retention_days)


@router.get("/apps", summary="Every app with its ingest limits, redaction and retention (never its keys)")
def apps(db: SessionDep, _: AdminTokenDep) -> dict[str, list[AppInfo]]:
    return {"apps": [_app_info(app) for app in db.exec(select(App).order_by(col(App.id))).all()]}


@router.put("/apps/{app}/limits", summary="Set an app's ingest limits (429 with Retry-After beyond them)")
def app_limits(app: Annotated[str, Path(max_length=200, description="The app's name")], body: AppLimits,
               request: Request, admin: AdminTokenDep) -> AppInfo:
    with write_transaction(request) as db:
        try:
            found = set_limits(db, app=find_app(db, app), per_second=body.per_second,
                               bytes_per_second=body.bytes_per_second)
        except AppError as error:
            raise HTTPException(404, str(error)) from None
        audit.record(db, actor=audit.token_actor(admin), action="app.limits", target=found.name,
                     address=client_address(request), detail=body.model_dump())
        return _app_info(found)


@router.get("/audit", summary="The audit trail, newest first")
def audit_trail(db: SessionDep, _: AdminTokenDep,
                since: Annotated[int, Query(ge=0, description="Only events at or after this epoch ms")] = 0,
                limit: Annotated[int, Query(ge=1, le=1000, description="Most events (at most 1,000)")] = 200,
                ) -> dict[str, list[AuditEvent]]:
    return {"events": [AuditEvent(**{**event.model_dump(), "detail": json.loads(event.detail or "{}")})
                       for event in audit.events(db, since_ms=since, limit=limit)]}

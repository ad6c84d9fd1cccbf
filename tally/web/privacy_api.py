"""The privacy API (bearer token of `admin` scope): each app's redaction policy and retention, as `tally apps
set-redaction` and `set-retention` set them, and erasing a person, as `tally erase` does; every change is
audited."""

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from tally.ingest.detectors import NAMES
from tally.ingest.keys import AppError, find_app, set_redaction
from tally.ingest.redaction import Policy, PolicyError
from tally.store import audit
from tally.store.erasure import Erased, after_commit, erase_person
from tally.store.models import App
from tally.store.retention import MAX_DAYS, set_retention
from tally.web.deps import AdminTokenDep, SessionDep, client_address, write_transaction
from tally.web.errors import ApiError, error_responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["admin"], responses=error_responses(401, 403, 404, 422, 503))
AppName = Annotated[str, Path(max_length=200, description="The app's name")]


class RedactionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "mask", "hash", "drop-body"] = Field(
        description="off: store what was sent; mask: [EMAIL]; hash: [EMAIL:9f86d081884c], the same value always "
                    "the same token; drop-body: no text at all, the numbers kept")
    detectors: list[str] = Field(list(NAMES), description=f"Built-in detectors: {', '.join(NAMES)}")
    patterns: dict[str, str] = Field({}, description='Detectors of the app\'s own: {"LABEL": "regular expression"}')


class AppRedaction(BaseModel):
    app: str
    policy: RedactionPolicy | None = Field(description="The app's own policy; null: the server's")


def _app(db: Session, name: str) -> App:
    try:
        return find_app(db, name)
    except AppError as error:
        raise HTTPException(404, str(error)) from None


def _answer(app: App) -> AppRedaction:
    return AppRedaction(app=app.name, policy=RedactionPolicy(**app.redaction) if app.redaction else None)


@router.put("/apps/{app}/redaction", summary="Set what ingest hides in an app's texts and raw JSON before storing")
def put_redaction(app: AppName, body: RedactionPolicy, request: Request, admin: AdminTokenDep) -> AppRedaction:
    try:
        policy = Policy.parse(body.model_dump())
    except PolicyError as error:
        raise ApiError(422, "invalid_payload", error.message,
                       [{"field": error.field, "message": error.message}]) from None
    return _change(request, admin, app, policy)


@router.delete("/apps/{app}/redaction", summary="Put an app back on the server's redaction policy")
def delete_redaction(app: AppName, request: Request, admin: AdminTokenDep) -> AppRedaction:
    return _change(request, admin, app, None)


def _change(request: Request, admin: Any, app: str, policy: Policy | None) -> AppRedaction:
    with write_transaction(request) as db:
        found = set_redaction(db, app=_app(db, app), policy=policy)
        audit.record(db, actor=audit.token_actor(admin), action="app.redaction", target=found.name,
                     address=client_address(request), detail={"policy": found.redaction})
        return _answer(found)


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid")

    raw_days: int = Field(ge=1, le=MAX_DAYS, description="Days the texts and raw JSON of interactions are kept")
    uploads_days: int | None = Field(None, ge=1, le=MAX_DAYS,
                                     description="Days uploaded images are kept; null: as long as the content")


class AppRetention(BaseModel):
    app: str
    raw_days: int | None = Field(description="null: kept forever")
    uploads_days: int | None


def _retention_answer(app: App) -> AppRetention:
    return AppRetention(app=app.name, raw_days=app.raw_retention_days, uploads_days=app.upload_retention_days)


@router.put("/apps/{app}/retention", summary="Set how long an app's raw content and images are kept",
            description="Every night one server removes older texts, raw JSON and images; every interaction's "
                        "numbers stay, so usage, costs and sessions keep their whole history.")
def put_retention(app: AppName, body: Retention, request: Request, admin: AdminTokenDep) -> AppRetention:
    return _keep(request, admin, app, body.raw_days, body.uploads_days)


@router.delete("/apps/{app}/retention", summary="Keep an app's raw content and images forever (the default)")
def delete_retention(app: AppName, request: Request, admin: AdminTokenDep) -> AppRetention:
    return _keep(request, admin, app, None, None)


def _keep(request: Request, admin: Any, app: str, raw_days: int | None, uploads_days: int | None) -> AppRetention:
    with write_transaction(request) as db:
        found = _app(db, app)
        set_retention(found, raw_days=raw_days, uploads_days=uploads_days)
        db.add(found)
        audit.record(db, actor=audit.token_actor(admin), action="app.retention", target=found.name,
                     address=client_address(request), detail={"raw_days": raw_days, "uploads_days": uploads_days})
        return _retention_answer(found)


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str = Field(min_length=1, max_length=200, description="The app's name")
    user_id: str | None = Field(None, min_length=1, max_length=255, description="The person's userId in the app")
    email: str | None = Field(None, min_length=3, max_length=320, description="The person's email (any case)")


class ErasureReceipt(BaseModel):
    erasure: int = Field(description="The receipt's number, also in the audit log (no personal data there)")
    users: int
    interactions: int
    sessions: int
    images: int
    export_files: list[str] = Field(description="Export files written before that hold the person: not changed")
    analytics: str = Field(description="This server's analytics are purged before the answer; other replicas' "
                                       "at their next refresh")


@router.post("/erasures", summary="Erase a person from an app (GDPR): every row, text, image and analytics row")
async def post_erasure(body: ErasureRequest, request: Request, admin: AdminTokenDep,
                       db: SessionDep) -> ErasureReceipt:
    if not body.user_id and not body.email:
        raise ApiError(422, "invalid_payload", "give the person's user_id or email",
                       [{"field": "user_id", "message": "give the person's user_id or email"}])
    state = request.app.state
    erased = await run_in_threadpool(_erase, request, admin, body)
    await run_in_threadpool(db.commit)  # ends the token check's read transaction, which would hold SQLite's log
    await run_in_threadpool(after_commit, state.engine, erased)
    try:
        await run_in_threadpool(state.analytics.refresh)  # applies the erasure to this server's DuckDB file now
        analytics = "removed"
    except Exception:  # the erasure is done in the store; the next refresh applies it (and retries the file)
        log.exception("erasure %d: the analytics refresh failed; the next one removes the person", erased.erasure_id)
        analytics = "pending: removed at the next analytics refresh"
    return ErasureReceipt(erasure=erased.erasure_id, users=erased.users, interactions=erased.interactions,
                          sessions=erased.sessions, images=erased.images, export_files=erased.export_files,
                          analytics=analytics)


def _erase(request: Request, admin: Any, body: ErasureRequest) -> Erased:
    with write_transaction(request) as db:
        return erase_person(db, app=_app(db, body.app), user_id=body.user_id, email=body.email,
                            actor=audit.token_actor(admin), data_dir=request.app.state.settings.data_dir,
                            address=client_address(request))

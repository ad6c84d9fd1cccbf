"""The privacy API (bearer token of `admin` scope): each app's redaction policy, as `tally apps set-redaction` sets
it; every change is audited."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from tally.ingest.detectors import NAMES
from tally.ingest.keys import AppError, find_app, set_redaction
from tally.ingest.redaction import Policy, PolicyError
from tally.store import audit
from tally.store.models import App
from tally.web.deps import AdminTokenDep, client_address, write_transaction
from tally.web.errors import ApiError, error_responses

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
        try:
            found = set_redaction(db, app=find_app(db, app), policy=policy)
        except AppError as error:
            raise HTTPException(404, str(error)) from None
        audit.record(db, actor=audit.token_actor(admin), action="app.redaction", target=found.name,
                     address=client_address(request), detail={"policy": found.redaction})
        return _answer(found)

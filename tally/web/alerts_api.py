"""Alerts over HTTP (admin scope: a rule makes the server post to any URL): rules, and the history of what fired
and resolved with each delivery's outcome."""

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tally.store import audit
from tally.store.access import Actor
from tally.store.alerts import AlertError, add_rule, list_rules, recent_events, remove_rule
from tally.store.limits import MAX_ID
from tally.store.models import AlertRule
from tally.web.deps import AdminTokenDep, SessionDep, client_address, write_transaction
from tally.web.errors import ApiError, error_responses

router = APIRouter(prefix="/api/v1/alerts", tags=["admin"], responses=error_responses(400, 401, 403, 404, 422, 503))


class NewRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["budget", "error_rate", "latency", "unpriced_model", "silence"]
    webhook_url: str = Field(max_length=2000)
    app: str | None = Field(None, max_length=200, description="Only this app (its name); null: every app")
    threshold: float | None = Field(None, allow_inf_nan=False, description="error_rate: percent; latency: p95 ms")
    window_minutes: float | None = Field(None, allow_inf_nan=False, description="The window read back from now")
    format: Literal["json", "slack"] = "json"


def _rule(rule: AlertRule) -> dict:
    return {"id": rule.id, "kind": rule.kind, "app_id": rule.app_id, "threshold": rule.threshold,
            "window_minutes": rule.window_minutes, "webhook_url": rule.webhook_url, "format": rule.format,
            "created_at": rule.created_at}


@router.get("", summary="Every alert rule (never its signing secret)")
def rules(db: SessionDep, _: AdminTokenDep) -> dict:
    return {"rules": [_rule(rule) for rule in list_rules(db, apps=None)]}


@router.post("", status_code=201, summary="Add an alert rule; its signing secret is in this answer only")
def create(body: NewRule, request: Request, admin: AdminTokenDep) -> dict:
    with write_transaction(request) as db:
        try:
            rule = add_rule(db, Actor(audit.token_actor(admin), client_address(request)), kind=body.kind,
                            webhook_url=body.webhook_url, app=body.app, threshold=body.threshold,
                            window_minutes=body.window_minutes, format=body.format)
        except AlertError as error:
            raise ApiError(422, "invalid_alert", str(error), [{"field": error.field, "message": str(error)}]) from None
        return {**_rule(rule), "secret": rule.secret}


@router.delete("/{rule_id}", status_code=204, summary="Remove an alert rule, its state and its history")
def delete(rule_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request, admin: AdminTokenDep) -> Response:
    with write_transaction(request) as db:
        if not remove_rule(db, Actor(audit.token_actor(admin), client_address(request)), rule_id, apps=None):
            raise HTTPException(404, f"no alert rule {rule_id}")
    return Response(status_code=204)


@router.get("/events", summary="What fired, warned and resolved, newest first, with each delivery's outcome")
def events(db: SessionDep, _: AdminTokenDep,
           limit: Annotated[int, Query(ge=1, le=1000, description="Most events")] = 100) -> dict:
    return {"events": [{**event.model_dump(), "kind": rule.kind}
                       for event, rule in recent_events(db, apps=None, limit=limit)]}

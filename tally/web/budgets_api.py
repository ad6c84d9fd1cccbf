"""Budgets over HTTP: the check an app makes before calling a model (its own keys in headers), and listing,
adding and removing budgets (bearer tokens: read lists, export changes, each limited to its apps)."""

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tally.analytics.budgets import BudgetBoard
from tally.analytics.filters import FilterError, parse_id
from tally.ingest.service import UNAUTHORIZED
from tally.store import audit
from tally.store.access import Actor
from tally.store.app_access import app_ids
from tally.store.budgets import BudgetError, add_budget, list_budgets, remove_budget
from tally.store.limits import MAX_ID
from tally.store.models import Budget, id_of
from tally.web.deps import ExportTokenDep, ReadTokenDep, SessionDep, client_address, write_transaction
from tally.web.errors import ApiError, error_responses

router = APIRouter(prefix="/api/v1/budgets", tags=["budgets"], responses=error_responses(400, 401, 403, 404, 422, 503))
TOP_USERS = 10  # of a per-user budget, the users closest to its limit


class NewBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str = Field(max_length=200, description="The app's name or id")
    metric: Literal["tokens", "cost"] = Field(description="tokens, or cost in USD")
    limit: float = Field(gt=0, allow_inf_nan=False)
    period: Literal["hour", "day", "week", "month"] = Field(description="Calendar periods in the analytics zone")
    per_user: bool = Field(False, description="The limit applies to each end user separately")
    model: str | None = Field(None, max_length=200, description="Only this model's use counts")
    warn_at: float = Field(0.8, gt=0, le=1, description="The share of the limit that warns")


def _board(request: Request) -> BudgetBoard:
    return request.app.state.analytics.budgets


@router.get("/check", summary="May the app (and its user) call a model now? Authenticated with the app's keys",
            description="Send the app's keys as `Tally-App-Key` and `Tally-Api-Key` headers. `allowed` is false when "
                        "a budget that applies (the app's, and with `user` that user's) is used up. The figures "
                        "are those of the last analytics refresh (`counted_at`): up to TALLY_ANALYTICS_REFRESH_"
                        "SECONDS and the refresh's time behind.", openapi_extra={"security": []})
async def check(request: Request, tally_app_key: Annotated[str, Header()] = "",
                tally_api_key: Annotated[str, Header()] = "",
                user: Annotated[str | None, Query(max_length=320, description="The app's userId or email")] = None,
                ) -> dict:
    app = await request.app.state.ingest.verifier.verify(tally_app_key, tally_api_key)
    if app is None:
        raise ApiError(401, "unauthorized", UNAUTHORIZED, [{"field": "Tally-Api-Key", "message": UNAUTHORIZED}])
    board = _board(request)
    return board.status(app.app_id, board.user_id(app.app_id, user) if user else None)


def _described(board: BudgetBoard, budget: Budget, now: int) -> dict:
    described: dict[str, Any] = {
        "id": budget.id, "app_id": budget.app_id, "metric": budget.metric, "limit": budget.limit_value,
        "period": budget.period, "per_user": budget.per_user, "model": budget.model,
        "warn_at": budget.warn_at, "created_at": budget.created_at}
    whole = next((b for b in board.status(budget.app_id, None, now_ms=now)["budgets"] if b["id"] == budget.id), None)
    if budget.per_user:
        described["users"] = board.closest_users(id_of(budget), TOP_USERS, now_ms=now)
    return {**described, "use": whole}


@router.get("", summary="Budgets with their use in the current window (per-user ones: the users closest to it)")
def budgets(request: Request, db: SessionDep, token: ReadTokenDep,
            app: Annotated[str | None, Query(description="App id")] = None) -> dict:
    try:
        app_id = parse_id("app", app)
    except FilterError as error:
        raise ApiError(400, "invalid_filter", str(error), [{"field": error.field, "message": str(error)}]) from None
    now, board = time.time_ns() // 1_000_000, _board(request)
    return {"budgets": [_described(board, budget, now)
                        for budget in list_budgets(db, apps=app_ids(token.apps), app_id=app_id)],
            "counted_at": board.counted_at}


@router.post("", status_code=201, summary="Add a budget; it is counted from the next analytics refresh")
def create(body: NewBudget, request: Request, token: ExportTokenDep) -> dict:
    with write_transaction(request) as db:
        try:
            budget = add_budget(db, Actor(audit.token_actor(token), client_address(request)), app=body.app,
                                metric=body.metric, limit=body.limit, period=body.period, per_user=body.per_user,
                                model=body.model, warn_at=body.warn_at, apps=app_ids(token.apps))
        except BudgetError as error:
            raise ApiError(422, "invalid_budget", str(error), [{"field": error.field, "message": str(error)}]) from None
        return _described(_board(request), budget, time.time_ns() // 1_000_000)


@router.delete("/{budget_id}", status_code=204, summary="Remove a budget")
def delete(budget_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request, token: ExportTokenDep) -> Response:
    with write_transaction(request) as db:
        if not remove_budget(db, Actor(audit.token_actor(token), client_address(request)), budget_id,
                             apps=app_ids(token.apps)):
            raise HTTPException(404, f"no budget {budget_id}")
    return Response(status_code=204)

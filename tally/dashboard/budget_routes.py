"""The Budgets page: each budget's use in its current window, the users closest to a per-user budget, and (for
analysts and admins) adding and removing budgets, as `tally budgets` and the API do."""

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from tally.analytics.budgets import BudgetBoard
from tally.dashboard.routes import page_response
from tally.dashboard.web_session import AccountDep, check_csrf
from tally.store import audit
from tally.store.access import Actor
from tally.store.accounts import may
from tally.store.app_access import app_ids
from tally.store.budgets import METRICS, PERIODS, BudgetError, add_budget, list_budgets, remove_budget
from tally.store.models import DashboardAccount, id_of
from tally.web.deps import SessionDep, client_address, write_transaction

router = APIRouter(prefix="/dashboard/budgets", include_in_schema=False)
Text = Annotated[str, Form()]
USERS_SHOWN = 5  # of a per-user budget, the users closest to it


def budget_rows(request: Request, db: Session, account: DashboardAccount) -> list[dict]:
    """The budgets the account sees, each with its use now (as of the last count) and, per user, the closest."""
    board: BudgetBoard = request.app.state.analytics.budgets
    now = time.time_ns() // 1_000_000
    rows = []
    for budget in list_budgets(db, apps=app_ids(account.apps)):
        use = next((b for b in board.status(budget.app_id, None, now_ms=now)["budgets"] if b["id"] == budget.id),
                   None)
        users = board.closest_users(id_of(budget), USERS_SHOWN, now_ms=now) if budget.per_user else []
        rows.append({"budget": budget, "use": use, "users": users,
                     "share": (use["used"] / budget.limit_value) if use else None})
    return rows


def _page(request: Request, account: DashboardAccount, db: Session, *, status: int = 200,
          error: dict | None = None, form: dict | None = None) -> Response:
    response = page_response(request, account, "budgets.html", "budgets", None,
                             rows=budget_rows(request, db, account), may_change=may(account, "analyst"),
                             metrics=METRICS, periods=PERIODS, error=error,
                             form=form or {"metric": "tokens", "period": "day", "warn_at": "0.8"},
                             counted_at=request.app.state.analytics.budgets.counted_at)
    response.status_code = status
    return response


def _refused(request: Request, account: DashboardAccount, db: Session, status: int, field: str, message: str,
             form: dict | None = None) -> Response:
    return _page(request, account, db, status=status, error={"field": field, "message": message}, form=form)


@router.get("")
def budgets(request: Request, account: AccountDep, db: SessionDep) -> Response:
    return _page(request, account, db)


@router.post("")
def add(request: Request, account: AccountDep, db: SessionDep, csrf: Text = "", app: Text = "", metric: Text = "",
        limit: Text = "", period: Text = "", per_user: Annotated[bool, Form()] = False, model: Text = "",
        warn_at: Text = "0.8") -> Response:
    check_csrf(request, csrf)
    form = {"app": app, "metric": metric, "limit": limit, "period": period, "per_user": per_user, "model": model,
            "warn_at": warn_at}
    if not may(account, "analyst"):
        return _refused(request, account, db, 403, "account", "only an analyst or an admin may add budgets", form)
    try:
        numbers = {name: float(value) for name, value in (("limit", limit), ("warn_at", warn_at))}
    except ValueError:
        return _refused(request, account, db, 422, "limit", "the limit and the warning share are numbers", form)
    try:
        with write_transaction(request) as writer:
            add_budget(writer, Actor(audit.account_actor(account.email), client_address(request)), app=app,
                       metric=metric, limit=numbers["limit"], period=period, per_user=per_user,
                       model=model.strip() or None, warn_at=numbers["warn_at"], apps=app_ids(account.apps))
    except BudgetError as error:
        return _refused(request, account, db, 422, error.field, str(error), form)
    return RedirectResponse("/dashboard/budgets", status_code=303)


@router.post("/{budget_id}/remove")
def remove(request: Request, account: AccountDep, db: SessionDep, budget_id: int, csrf: Text = "") -> Response:
    check_csrf(request, csrf)
    if not may(account, "analyst"):
        return _refused(request, account, db, 403, "account", "only an analyst or an admin may remove budgets")
    with write_transaction(request) as writer:
        remove_budget(writer, Actor(audit.account_actor(account.email), client_address(request)), budget_id,
                      apps=app_ids(account.apps))
    return RedirectResponse("/dashboard/budgets", status_code=303)

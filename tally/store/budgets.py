"""Budgets as the store keeps them: adding, listing and removing them, each change audited.

A budget caps an app's tokens or cost (USD) per calendar hour, day, week or month in the analytics time zone,
for the app as a whole or for each of its end users separately, optionally for one model only. What has been
used is counted by the analytics (`analytics.budgets`).
"""

import math

from sqlmodel import Session, col, select

from tally.store import audit
from tally.store.access import Actor
from tally.store.app_access import AppIds, find_app_id, sees, visible
from tally.store.models import App, Budget, id_of
from tally.store.secrets import now_ms

METRICS = ("tokens", "cost")
PERIODS = ("hour", "day", "week", "month")
MAX_LIMIT = 1e15


class BudgetError(ValueError):
    """A budget that cannot be added as asked; `field` names the option at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def add_budget(db: Session, actor: Actor, *, app: str | int, metric: str, limit: float, period: str,
               per_user: bool = False, model: str | None = None, warn_at: float = 0.8,
               apps: AppIds = None) -> Budget:
    """A new budget of `app` (its name or id), which one limited to `apps` must see."""
    app_id = find_app_id(db, app)
    found = db.get(App, app_id) if app_id is not None else None
    if found is None or not sees(apps, app_id):
        raise BudgetError(f"no app {app!r}", "app")
    if metric not in METRICS:
        raise BudgetError(f"a budget counts tokens or cost, not {metric!r}", "metric")
    if not (math.isfinite(limit) and 0 < limit <= MAX_LIMIT):
        raise BudgetError(f"the limit must be above 0 and at most {MAX_LIMIT:g}", "limit")
    if metric == "tokens" and limit != int(limit):
        raise BudgetError("a token limit is a whole number", "limit")
    if period not in PERIODS:
        raise BudgetError(f"unknown period {period!r}; use one of: {', '.join(PERIODS)}", "period")
    if not (math.isfinite(warn_at) and 0 < warn_at <= 1):
        raise BudgetError("--warn-at is a share of the limit, above 0 and at most 1", "warn_at")
    if model is not None and not 0 < len(model) <= 200:
        raise BudgetError("a model name has 1 to 200 characters", "model")
    budget = Budget(app_id=id_of(found), per_user=per_user, metric=metric, limit_value=limit, period=period,
                    model=model, warn_at=warn_at, created_at=now_ms(), created_by=actor.name)
    db.add(budget)
    db.flush()
    audit.record(db, actor=actor.name, action="budget.add", target=f"budget {budget.id}", address=actor.address,
                 detail={"app": found.name, "metric": metric, "limit": limit, "period": period,
                         "per_user": per_user, "model": model, "warn_at": warn_at})
    return budget


def list_budgets(db: Session, *, apps: AppIds, app_id: int | None = None) -> list[Budget]:
    """The budgets one limited to `apps` sees (of one app, when `app_id` is given), by id."""
    query = select(Budget).where(visible(col(Budget.app_id), apps)).order_by(col(Budget.id))
    if app_id is not None:
        query = query.where(col(Budget.app_id) == app_id)
    return list(db.exec(query).all())


def remove_budget(db: Session, actor: Actor, budget_id: int, *, apps: AppIds) -> bool:
    """False if there is no such budget (that one limited to `apps` sees)."""
    budget = db.get(Budget, budget_id)
    if budget is None or not sees(apps, budget.app_id):
        return False
    db.delete(budget)
    db.flush()
    audit.record(db, actor=actor.name, action="budget.remove", target=f"budget {budget_id}", address=actor.address,
                 detail={"app_id": budget.app_id, "metric": budget.metric, "limit": budget.limit_value,
                         "period": budget.period})
    return True

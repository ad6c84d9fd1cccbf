"""`tally budgets …`: caps on an app's tokens or cost per hour, day, week or month, for the app or each user."""

import json
from typing import Annotated

import typer

from tally.server.cli_store import CLI, store
from tally.store.budgets import PERIODS, BudgetError, add_budget, list_budgets, remove_budget
from tally.store.models import Budget

budgets_app = typer.Typer(help="Token and cost budgets: what an app (or each of its users) may use per period; "
                               "apps ask GET /api/v1/budgets/check before calling a model.", no_args_is_help=True)


def _shown(budget: Budget) -> dict:
    return {"id": budget.id, "app_id": budget.app_id, "metric": budget.metric, "limit": budget.limit_value,
            "period": budget.period, "per_user": budget.per_user, "model": budget.model, "warn_at": budget.warn_at}


def _line(row: dict) -> str:
    limit = f"{row['limit']:,.0f} tokens" if row["metric"] == "tokens" else f"${row['limit']:,.2f}"
    scope = "each user" if row["per_user"] else "the app"
    model = f", model {row['model']}" if row["model"] else ""
    return (f"{row['id']:>4}  app {row['app_id']}: {limit} per {row['period']} for {scope}{model}, "
            f"warns at {row['warn_at']:.0%}")


@budgets_app.command("add")
def budgets_add(
    app: Annotated[str, typer.Option(help="The app (name or id)")],
    per: Annotated[str, typer.Option(help=f"The calendar period, in the analytics time zone: {', '.join(PERIODS)}")],
    tokens: Annotated[int | None, typer.Option(help="A limit in tokens (reported and estimated)")] = None,
    cost: Annotated[float | None, typer.Option(help="A limit in USD (unpriced models are shown, never $0)")] = None,
    user_scoped: Annotated[bool, typer.Option("--user-scoped", help="The limit applies to each end user")] = False,
    model: Annotated[str | None, typer.Option(help="Only this model's use counts")] = None,
    warn_at: Annotated[float, typer.Option(help="The share of the limit that warns")] = 0.8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Add a budget; every server counts it from its next analytics refresh."""
    if (tokens is None) == (cost is None):
        typer.echo("error: give either --tokens or --cost", err=True)
        raise typer.Exit(2)
    metric, limit = ("tokens", float(tokens)) if tokens is not None else ("cost", float(cost or 0))
    with store() as db:
        try:
            budget = add_budget(db, CLI, app=app, metric=metric, limit=limit, period=per, per_user=user_scoped,
                                model=model, warn_at=warn_at)
        except BudgetError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        shown = _shown(budget)
    typer.echo(json.dumps(shown) if as_json else f"added budget {_line(shown)}")


@budgets_app.command("list")
def budgets_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False) -> None:
    """Every budget (its current use: GET /api/v1/budgets, or the check endpoint)."""
    with store() as db:
        rows = [_shown(budget) for budget in list_budgets(db, apps=None)]
    typer.echo(json.dumps(rows) if as_json else "\n".join(_line(row) for row in rows) or "no budgets")


@budgets_app.command("remove")
def budgets_remove(budget_id: int) -> None:
    """Remove a budget."""
    with store() as db:
        if not remove_budget(db, CLI, budget_id, apps=None):
            typer.echo(f"error: no budget {budget_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"removed budget {budget_id}")

"""`tally alerts …`: what to watch (budgets, error rate, latency, unpriced models, silent apps) and which webhook
hears of it; the history of what fired and resolved, with each delivery's outcome."""

import json
from typing import Annotated

import typer

from tally.server.cli_store import CLI, store, utc_minute
from tally.store.alerts import FORMATS, KINDS, AlertError, add_rule, list_rules, recent_events, remove_rule

alerts_app = typer.Typer(help="Alerts to webhooks: budgets crossed, error-rate and latency spikes, unpriced "
                              "models, apps gone quiet; each fires once per crossing and resolves.",
                         no_args_is_help=True)


@alerts_app.command("add")
def alerts_add(
    kind: Annotated[str, typer.Argument(help=", ".join(KINDS))],
    webhook: Annotated[str, typer.Option(help="The http(s) URL the alerts are posted to")],
    app: Annotated[str | None, typer.Option(help="Only this app [default: every app]")] = None,
    threshold: Annotated[float | None, typer.Option(help="error_rate: percent; latency: p95 in ms")] = None,
    window_minutes: Annotated[float | None, typer.Option(
        help="The window read back from now: error_rate and latency 15, unpriced_model 60, silence 30 (the quiet "
             "time that fires it)")] = None,
    format: Annotated[str, typer.Option(help=f"{' or '.join(FORMATS)} (a Slack-compatible text)")] = "json",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Add a rule; prints its signing secret once (deliveries carry Tally-Signature, an HMAC-SHA256 with it)."""
    with store() as db:
        try:
            rule = add_rule(db, CLI, kind=kind, webhook_url=webhook, app=app, threshold=threshold,
                            window_minutes=window_minutes, format=format)
        except AlertError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        shown = {"id": rule.id, "kind": rule.kind, "secret": rule.secret}
    typer.echo(json.dumps(shown) if as_json else f"added alert rule {shown['id']} ({kind})\n"
                                                  f"signing secret: {shown['secret']}  (shown only now)")


@alerts_app.command("list")
def alerts_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False) -> None:
    """Every rule (never its secret)."""
    with store() as db:
        rows = [{"id": r.id, "kind": r.kind, "app_id": r.app_id, "threshold": r.threshold,
                 "window_minutes": r.window_minutes, "webhook_url": r.webhook_url, "format": r.format}
                for r in list_rules(db, apps=None)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['id']:>4}  {row['kind']:<15} app {row['app_id'] or 'all':<5} threshold "
                   f"{row['threshold'] if row['threshold'] is not None else '-':<8} window {row['window_minutes']:g} "
                   f"min  -> {row['webhook_url']} ({row['format']})")
    if not rows:
        typer.echo("no alert rules")


@alerts_app.command("remove")
def alerts_remove(rule_id: int) -> None:
    """Remove a rule with its state and history."""
    with store() as db:
        if not remove_rule(db, CLI, rule_id, apps=None):
            typer.echo(f"error: no alert rule {rule_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"removed alert rule {rule_id}")


@alerts_app.command("history")
def alerts_history(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most events, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False,
) -> None:
    """What fired, warned and resolved, newest first, with each delivery's outcome."""
    with store() as db:
        rows = [{**event.model_dump(), "kind": rule.kind} for event, rule in recent_events(db, apps=None, limit=limit)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        error = f": {row['last_error']}" if row["last_error"] else ""
        typer.echo(f"{utc_minute(row['at'])}  {row['status']:<8} {row['kind']:<15} {row['message']}  "
                   f"[{row['delivery']}, {row['attempts']} attempt(s){error}]")
    if not rows:
        typer.echo("no alerts yet")

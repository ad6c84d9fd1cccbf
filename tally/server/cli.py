"""The `tally` command: serve, migrate, and manage apps, keys, read tokens and exports."""

import json
from typing import Annotated

import typer
from sqlmodel import col, select

from tally.ingest.keys import add_api_key, create_app, find_app, live_keys, revoke_api_keys, set_limits
from tally.ingest.redaction import Policy
from tally.server import migrations
from tally.server.cli_alerts import alerts_app
from tally.server.cli_audit import audit_trail
from tally.server.cli_budgets import budgets_app
from tally.server.cli_exports import export, exports_app
from tally.server.cli_privacy import apps_set_redaction, apps_set_retention, erase, retention_app
from tally.server.cli_serve import redacted, serve
from tally.server.cli_store import store
from tally.server.cli_tokens import tokens_app
from tally.server.cli_users import users_app
from tally.server.instance import running
from tally.store import audit
from tally.store.engine import build_engine
from tally.store.models import App
from tally.store.secrets import display_prefix
from tally.store.settings import Settings

app = typer.Typer(help="Tally: analytics for LLM telemetry sent in the Reconify format.", no_args_is_help=True)
db_app = typer.Typer(help="The relational store.", no_args_is_help=True)
apps_app = typer.Typer(help="Apps and their API keys.", no_args_is_help=True)
analytics_app = typer.Typer(help="The DuckDB analytics kept in step with the store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apps_app, name="apps")
app.add_typer(tokens_app, name="tokens")
app.add_typer(analytics_app, name="analytics")
app.add_typer(users_app, name="users")
app.add_typer(budgets_app, name="budgets")
app.add_typer(alerts_app, name="alerts")
app.add_typer(exports_app, name="exports")
app.add_typer(retention_app, name="retention")
app.command()(export)
app.command()(serve)
app.command("audit")(audit_trail)
app.command("erase")(erase)


@app.command()
def demo(
    interactions: Annotated[int, typer.Option(min=1, help="How many interactions to generate")] = 5000,
    days: Annotated[int, typer.Option(min=1, help="Spread over this many past days")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed, for the same data again")] = 7,
) -> None:
    """Fill the store with realistic synthetic traffic from three demo apps, through the real ingest path."""
    from tally.server.demo_data import load_demo

    settings = Settings()
    migrations.upgrade(settings)
    engine = build_engine(settings)
    try:
        stored = load_demo(engine, settings, interactions=interactions, days=days, seed=seed)
    finally:
        engine.dispose()
    typer.echo(f"stored {stored} demo interactions; a running server shows them within "
               f"{settings.analytics_refresh_seconds:g} s (or run `tally analytics refresh`)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = Settings()
    migrations.upgrade(settings)
    typer.echo(f"store is up to date: {redacted(settings.database_url)}")


@apps_app.command("create")
def apps_create(
    name: str,
    session_timeout: Annotated[float | None, typer.Option(min=0.01, help="Default session timeout, minutes")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Create an app; prints its app key and a new API key, once."""
    with store() as db:
        created, api_key = create_app(db, name=name, session_timeout_minutes=session_timeout)
        app_key = created.app_key
        audit.record(db, actor=audit.cli_actor(), action="app.create", target=name,
                     detail={"api_key": display_prefix(api_key)})
    if as_json:
        typer.echo(json.dumps({"app": name, "app_key": app_key, "api_key": api_key}))
    else:
        typer.echo(f"app:     {name}\nappKey:  {app_key}\napiKey:  {api_key}\n"
                   "The API key is shown only now; store it as a secret.")


@apps_app.command("list")
def apps_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False) -> None:
    """List apps with their app keys and live API key prefixes."""
    with store() as db:
        apps = db.exec(select(App).order_by(col(App.id))).all()
        rows = [{"app": a.name, "app_key": a.app_key, "session_timeout_minutes": a.session_timeout_minutes,
                 "api_keys": [k.prefix for k in live_keys(db, app=a)], "max_per_second": a.max_per_second,
                 "max_bytes_per_second": a.max_bytes_per_second, "redaction": a.redaction,
                 "raw_retention_days": a.raw_retention_days, "upload_retention_days": a.upload_retention_days}
                for a in apps]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        limits = ", ".join(f"{value:g} {unit}/s" for value, unit in (
            (row["max_per_second"], "interactions"), (row["max_bytes_per_second"], "bytes")) if value is not None)
        typer.echo(f"{row['app']:<24} {row['app_key']:<30} keys: {', '.join(row['api_keys']) or '-'}"
                   + (f"  limits: {limits}" if limits else "")
                   + (f"  redaction: {Policy.parse(row['redaction']).describe()}" if row["redaction"] else "")
                   + (f"  retention: {row['raw_retention_days']} days" if row["raw_retention_days"] else ""))


@apps_app.command("set-limit")
def apps_set_limit(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    per_second: Annotated[float | None, typer.Option(help="Interactions a second, over every replica; 0: no limit "
                                                          "[default: TALLY_APP_MAX_INTERACTIONS_PER_SECOND]")] = None,
    bytes_per_second: Annotated[float | None, typer.Option(
        help="Request bytes a second; 0: no limit [default: TALLY_APP_MAX_BYTES_PER_SECOND]")] = None,
) -> None:
    """Set APP's ingest limits (beyond them its clients get 429 with Retry-After); an option left out goes back to
    the server's default. Every server applies them within TALLY_KEY_CACHE_SECONDS."""
    with store() as db:
        limited = set_limits(db, app=find_app(db, app_name), per_second=per_second,
                             bytes_per_second=bytes_per_second)
        audit.record(db, actor=audit.cli_actor(), action="app.limits", target=limited.name,
                     detail={"per_second": per_second, "bytes_per_second": bytes_per_second})
    shown = [f"{value:g} {unit}/s" if value else f"no {unit} limit" for value, unit in (
        (per_second, "interactions"), (bytes_per_second, "bytes")) if value is not None]
    typer.echo(f"{app_name}: {', '.join(shown) or 'the server defaults'}")


apps_app.command("set-redaction")(apps_set_redaction)
apps_app.command("set-retention")(apps_set_retention)


@apps_app.command("rotate-key")
def apps_rotate_key(app_name: Annotated[str, typer.Argument(metavar="APP")]) -> None:
    """Add a new API key to APP; its old keys keep working until revoked."""
    with store() as db:
        api_key = add_api_key(db, app=find_app(db, app_name))
        audit.record(db, actor=audit.cli_actor(), action="app.key_add", target=app_name,
                     detail={"api_key": display_prefix(api_key)})
    typer.echo(f"apiKey:  {api_key}\nOld keys still work; revoke them with `tally apps revoke-key`.")


@apps_app.command("revoke-key")
def apps_revoke_key(app_name: Annotated[str, typer.Argument(metavar="APP")], key_prefix: str) -> None:
    """Revoke APP's API keys that start with KEY_PREFIX (as shown by `tally apps list`)."""
    with store() as db:
        count = revoke_api_keys(db, app=find_app(db, app_name), prefix=key_prefix)
        audit.record(db, actor=audit.cli_actor(), action="app.key_revoke", target=app_name,
                     detail={"api_key": key_prefix, "keys": count})
    typer.echo(f"revoked {count} key(s)")


@analytics_app.command("refresh")
def analytics_refresh() -> None:
    """Bring DuckDB up to date with the store once (what the server does every few seconds)."""
    from tally.analytics.service import refresh_once

    report = _analytics_job(refresh_once)
    typer.echo(f"refreshed: {report.interactions} interactions, {report.users} users, {report.deleted} deleted "
               f"in {report.seconds:.2f} s")
    if report.quarantined:
        typer.echo(f"{report.quarantined} interactions are left out: their values are out of bounds (the log says "
                   "which and why; fix them in the store and they come back)", err=True)


@analytics_app.command("rebuild")
def analytics_rebuild() -> None:
    """Recreate the DuckDB file from the store, even a damaged one; stop the server first."""
    from tally.analytics.service import rebuild

    report = _analytics_job(rebuild)
    typer.echo(f"rebuilt: {report.interactions} interactions, {report.users} users in {report.seconds:.2f} s")


def _analytics_job(job):
    from tally.analytics.service import WarehouseBusy

    settings = Settings()
    server = running(settings)
    if server is not None:
        typer.echo(f"error: {server.describe()} holds the analytics and refreshes them every "
                   f"{settings.analytics_refresh_seconds:g} s; stop it first to run this", err=True)
        raise typer.Exit(1)
    migrations.upgrade(settings)
    try:
        return job(settings)
    except WarehouseBusy as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None

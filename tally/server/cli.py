"""The `tally` command: serve, migrate, and manage apps, keys, read tokens and exports."""

import json
from typing import Annotated, Optional

import typer
from sqlalchemy import make_url
from sqlmodel import select

from tally.ingest.keys import add_api_key, create_app, find_app, live_keys, revoke_api_keys
from tally.server import migrations
from tally.server.cli_exports import export, exports_app
from tally.server.cli_store import store
from tally.server.cli_users import users_app
from tally.store.engine import build_engine
from tally.store.models import App
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

app = typer.Typer(help="Tally: analytics for LLM telemetry sent in the Reconify format.", no_args_is_help=True)
db_app = typer.Typer(help="The relational store.", no_args_is_help=True)
apps_app = typer.Typer(help="Apps and their API keys.", no_args_is_help=True)
tokens_app = typer.Typer(help="Read tokens for the /api/v1 read API.", no_args_is_help=True)
analytics_app = typer.Typer(help="The DuckDB analytics kept in step with the store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apps_app, name="apps")
app.add_typer(tokens_app, name="tokens")
app.add_typer(analytics_app, name="analytics")
app.add_typer(users_app, name="users")
app.add_typer(exports_app, name="exports")
app.command()(export)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Interface to listen on [default: TALLY_HOST or 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port [default: TALLY_PORT or 8000]")] = None,
    demo: Annotated[bool, typer.Option(
        help="Load demo data into an empty store; print the demo app's keys and dashboard login.")] = False,
) -> None:
    """Upgrade the store, then serve ingest and the read API."""
    import uvicorn

    from tally.server.app import create_app
    from tally.server.demo import ensure_demo_app
    from tally.server.demo_data import load_demo

    overrides = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    settings = Settings(**overrides)
    migrations.upgrade(settings)
    engine = build_engine(settings)
    base = f"http://{settings.host}:{settings.port}"
    if demo:
        if not _has_interactions(engine):
            typer.echo("The store is empty: loading 3,000 demo interactions…")
            load_demo(engine, settings, interactions=3000)
        keys = ensure_demo_app(engine, settings)
        typer.echo(f"\nDemo app keys and login (saved in {settings.data_dir / 'demo-app.json'}):\n"
                   f"  appKey:     {keys['app_key']}\n  apiKey:     {keys['api_key']}\n"
                   f"  read token: {keys['read_token']}\n"
                   f"  dashboard:  {keys['dashboard_email']} / {keys['dashboard_password']}\n")
    engine.dispose()
    typer.echo(f"Tally on {base}  (store: {_redacted(settings.database_url)})\n"
               f"  dashboard: {base}/dashboard\n  track:     POST {base}/track\n  API docs:  {base}/docs\n")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


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


def _has_interactions(engine) -> bool:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT 1 FROM interaction LIMIT 1")).first() is not None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = Settings()
    migrations.upgrade(settings)
    typer.echo(f"store is up to date: {_redacted(settings.database_url)}")


@apps_app.command("create")
def apps_create(
    name: str,
    session_timeout: Annotated[Optional[float], typer.Option(min=0.01, help="Default session timeout, minutes")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Create an app; prints its app key and a new API key, once."""
    with store() as db:
        created, api_key = create_app(db, name=name, session_timeout_minutes=session_timeout)
        app_key = created.app_key
    if as_json:
        typer.echo(json.dumps({"app": name, "app_key": app_key, "api_key": api_key}))
    else:
        typer.echo(f"app:     {name}\nappKey:  {app_key}\napiKey:  {api_key}\n"
                   "The API key is shown only now; store it as a secret.")


@apps_app.command("list")
def apps_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False) -> None:
    """List apps with their app keys and live API key prefixes."""
    with store() as db:
        rows = [{"app": a.name, "app_key": a.app_key, "session_timeout_minutes": a.session_timeout_minutes,
                 "api_keys": [k.prefix for k in live_keys(db, app=a)]} for a in db.exec(select(App).order_by(App.id))]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['app']:<24} {row['app_key']:<30} keys: {', '.join(row['api_keys']) or '-'}")


@apps_app.command("rotate-key")
def apps_rotate_key(app_name: Annotated[str, typer.Argument(metavar="APP")]) -> None:
    """Add a new API key to APP; its old keys keep working until revoked."""
    with store() as db:
        api_key = add_api_key(db, app=find_app(db, app_name))
    typer.echo(f"apiKey:  {api_key}\nOld keys still work; revoke them with `tally apps revoke-key`.")


@apps_app.command("revoke-key")
def apps_revoke_key(app_name: Annotated[str, typer.Argument(metavar="APP")], key_prefix: str) -> None:
    """Revoke APP's API keys that start with KEY_PREFIX (as shown by `tally apps list`)."""
    with store() as db:
        count = revoke_api_keys(db, app=find_app(db, app_name), prefix=key_prefix)
    typer.echo(f"revoked {count} key(s)")


@tokens_app.command("create")
def tokens_create(name: str) -> None:
    """Create a read token; prints it alone on stdout."""
    with store() as db:
        token = create_read_token(db, name=name)
    typer.echo(token)


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@analytics_app.command("refresh")
def analytics_refresh() -> None:
    """Bring DuckDB up to date with the store once (what the server does every few seconds)."""
    from tally.analytics.service import refresh_once

    report = _analytics_job(refresh_once)
    typer.echo(f"refreshed: {report.interactions} interactions, {report.users} users, {report.deleted} deleted "
               f"in {report.seconds:.2f} s")


@analytics_app.command("rebuild")
def analytics_rebuild() -> None:
    """Recreate the DuckDB file from the store; stop the server first."""
    from tally.analytics.service import rebuild

    report = _analytics_job(rebuild)
    typer.echo(f"rebuilt: {report.interactions} interactions, {report.users} users in {report.seconds:.2f} s")


def _analytics_job(job):
    from tally.analytics.service import WarehouseBusy

    settings = Settings()
    migrations.upgrade(settings)
    try:
        return job(settings)
    except WarehouseBusy as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None

"""`tally serve`: upgrade the store, then serve, in one process or (PostgreSQL) in several workers."""

import errno
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError

from tally.server import migrations
from tally.server.instance import AlreadyServed, client_url, serving
from tally.store.engine import build_engine, failure_reason, is_sqlite, sqlalchemy_url
from tally.store.settings import Settings

LOW_DISK_BYTES = 64 * 1024 * 1024


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: TALLY_HOST or 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: TALLY_PORT or 8000]")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Worker processes, each on a core of its own (PostgreSQL only) [default: TALLY_WORKERS or 1]")
    ] = None,
    demo: Annotated[bool, typer.Option(
        help="Load demo data into an empty store; print the demo app's keys and dashboard login.")] = False,
) -> None:
    """Upgrade the store, then serve ingest, the APIs and the dashboard."""
    import uvicorn

    settings = Settings()
    settings = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port,
                                           "workers": workers or settings.workers})
    if settings.workers > 1 and is_sqlite(sqlalchemy_url(settings.database_url)):
        typer.echo("error: a SQLite store has one server process; use PostgreSQL (TALLY_DATABASE_URL) to run "
                   "several workers or replicas", err=True)
        raise typer.Exit(1)
    _prepare_store(settings)
    if demo:
        _load_demo(settings)
    base = f"http://{settings.host}:{settings.port}"
    options = {"host": settings.host, "port": settings.port, "log_level": "info",
               "limit_concurrency": settings.max_connections, **_proxies(settings)}
    try:
        with serving(settings, client_url(settings)):
            typer.echo(f"Tally on {base}  (store: {redacted(settings.database_url)}, {settings.workers} "
                       f"worker{'s' if settings.workers > 1 else ''})\n  dashboard: {base}/dashboard\n"
                       f"  track:     POST {base}/track\n  API docs:  {base}/docs\n")
            if settings.workers == 1:
                from tally.server.app import create_app

                uvicorn.run(create_app(settings), **options)
            else:  # each worker builds its app from the same environment, and finds a DuckDB file of its own
                os.environ["TALLY_WORKERS"] = str(settings.workers)
                uvicorn.run("tally.server.app:app_from_environment", factory=True, workers=settings.workers,
                            **options)
    except AlreadyServed as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def _proxies(settings: Settings) -> dict:
    """Whose X-Forwarded-For uvicorn believes: the configured proxies only (its default trusts loopback, so that
    anything on the machine could pose as any client, the login throttle's address included)."""
    trusted = [entry.strip() for entry in settings.trusted_proxies.split(",") if entry.strip()]
    return {"proxy_headers": True, "forwarded_allow_ips": trusted} if trusted else {"proxy_headers": False}


def _prepare_store(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrations.upgrade(settings)
    except (OSError, OperationalError) as error:
        typer.echo(f"error: {storage_trouble(error, settings)}", err=True)
        raise typer.Exit(1) from None
    if (free := shutil.disk_usage(settings.data_dir).free) < LOW_DISK_BYTES:
        typer.echo(f"warning: the disk holding {settings.data_dir.resolve()} has {free:,} bytes free; ingest "
                   "answers 503 once it is full", err=True)


def _load_demo(settings: Settings) -> None:
    from tally.server.demo import ensure_demo_app
    from tally.server.demo_data import load_demo

    engine = build_engine(settings)
    try:
        with engine.connect() as conn:
            empty = conn.execute(text("SELECT 1 FROM interaction LIMIT 1")).first() is None
        if empty:
            typer.echo("The store is empty: loading 3,000 demo interactions…")
            load_demo(engine, settings, interactions=3000)
        keys = ensure_demo_app(engine, settings)
    finally:
        engine.dispose()
    typer.echo(f"\nDemo app keys and login (saved in {settings.data_dir / 'demo-app.json'}):\n"
               f"  appKey:     {keys['app_key']}\n  apiKey:     {keys['api_key']}\n"
               f"  read token: {keys['read_token']}\n"
               f"  dashboard:  {keys['dashboard_email']} / {keys['dashboard_password']}\n")


def storage_trouble(error: BaseException, settings: Settings) -> str:
    """What went wrong opening the store, in words an operator can act on."""
    free = shutil.disk_usage(settings.data_dir if settings.data_dir.exists() else Path.cwd()).free
    reason = failure_reason(error)
    if free < LOW_DISK_BYTES or "disk" in reason.lower() or getattr(error, "errno", None) in (errno.ENOSPC,
                                                                                            errno.EDQUOT):
        return (f"cannot write to the store in {settings.data_dir.resolve()}: {reason}; that disk has {free:,} "
                "bytes free. Free some space (or point TALLY_DATA_DIR elsewhere) and start again.")
    return f"cannot open the store {redacted(settings.database_url)}: {reason}"


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)

"""The store as CLI commands use it: migrated first, one session, committed once, user errors printed."""

from contextlib import contextmanager

import typer
from sqlmodel import Session

from tally.dashboard.accounts import AccountError
from tally.ingest.keys import AppError
from tally.server import migrations
from tally.store.engine import build_engine
from tally.store.settings import Settings


@contextmanager
def store(settings: Settings | None = None):
    """A migrated store and a session committed once at the end of the command; a refused request (unknown
    app, duplicate account…) is printed and exits 1, with nothing written."""
    settings = settings or Settings()
    migrations.upgrade(settings)
    engine = build_engine(settings)
    try:
        with Session(engine) as db:
            try:
                yield db
                db.commit()
            except (AppError, AccountError) as error:
                db.rollback()
                typer.echo(f"error: {error}", err=True)
                raise typer.Exit(1) from None
    finally:
        engine.dispose()

"""The store as CLI commands use it: migrated first, one session, committed once, user errors printed."""

from contextlib import contextmanager

import typer
from sqlmodel import Session

from tally.exports.csv_files import iso_utc
from tally.ingest.keys import AppError
from tally.server import migrations
from tally.store import audit
from tally.store.access import Actor
from tally.store.accounts import AccountError
from tally.store.app_access import UnknownApp
from tally.store.engine import build_engine, writing
from tally.store.read_tokens import TokenError
from tally.store.settings import Settings

CLI = Actor(audit.cli_actor())  # who the command line's changes are recorded as


def utc_minute(ms: int | None) -> str:
    """`2026-12-01 14:30 UTC` for epoch ms, `-` for none: how the command line's tables show times."""
    return "-" if ms is None else iso_utc(ms)[:16].replace("T", " ") + " UTC"


@contextmanager
def store(settings: Settings | None = None):
    """A migrated store and a session committed once at the end of the command; a refused request (unknown
    app, duplicate account…) is printed and exits 1, with nothing written."""
    settings = settings or Settings()
    migrations.upgrade(settings)
    engine = build_engine(settings)
    try:
        with Session(writing(engine)) as db:  # it reads, then writes: take SQLite's write lock first
            try:
                yield db
                db.commit()
            except (AppError, AccountError, TokenError, UnknownApp) as error:
                db.rollback()
                typer.echo(f"error: {error}", err=True)
                raise typer.Exit(1) from None
    finally:
        engine.dispose()

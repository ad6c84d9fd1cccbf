"""Alembic environment: runs migrations on the connection or URL handed over by the runner."""

from alembic import context
from sqlalchemy import create_engine

from tally.store.engine import sqlalchemy_url
from tally.store.models import SQLModel

config = context.config
target_metadata = SQLModel.metadata


def run_migrations(connection) -> None:
    # render_as_batch lets ALTERs work on SQLite, which cannot alter most constraints in place.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from tally.store.settings import Settings

        url = Settings().database_url
    with create_engine(sqlalchemy_url(url)).connect() as new_connection:
        run_migrations(new_connection)

"""Runs the Alembic migrations that ship inside the package."""

from pathlib import Path

from alembic import command
from alembic.config import Config

import tally.migrations
from tally.store.engine import build_engine, serialise
from tally.store.settings import Settings


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(tally.migrations.__file__).parent))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate the store named by `settings`, in one transaction, on a connection of its own. Replicas starting
    together on one PostgreSQL take turns: the first migrates, the others then find the store at head."""
    engine = build_engine(settings, foreign_keys=False)
    try:
        with engine.begin() as connection:
            serialise(connection, ["tally:migrations"])
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()

"""Builds the SQLAlchemy engine; every SQLite/PostgreSQL connection difference lives here."""

from functools import partial

from sqlalchemy import Engine, create_engine, event

from tally.store.settings import Settings


def sqlalchemy_url(url: str) -> str:
    """Accept the URLs operators write (postgresql://, postgres://) and pick the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def build_engine(settings: Settings, *, foreign_keys: bool = True) -> Engine:
    """`foreign_keys=False` is for migrations only: SQLite alters a table by copying it, and enforced
    foreign keys would veto dropping the original."""
    url = sqlalchemy_url(settings.database_url)
    if is_sqlite(url):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The driver's own transaction handling skips DDL and begins late; SQLAlchemy's documented recipe:
        # driver autocommit, and an explicit BEGIN whenever SQLAlchemy begins, so DDL is transactional too.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None})
        event.listen(engine, "connect", partial(_sqlite_pragmas, foreign_keys=foreign_keys))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def writing(engine: Engine) -> Engine:
    """The engine for a transaction that reads, then writes. On SQLite it takes the write lock at BEGIN: a
    transaction that read first and then tries to write fails at once with `database is locked` if another
    connection wrote in between, whatever the busy timeout. PostgreSQL needs nothing of the kind."""
    return engine.execution_options(tally_writes=True)


def _sqlite_begin(connection) -> None:
    immediate = connection.get_execution_options().get("tally_writes", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_connection, _record, *, foreign_keys: bool) -> None:
    # WAL lets readers run beside the writer; synchronous=FULL makes every commit durable,
    # which is what a 2xx from /track promises.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()

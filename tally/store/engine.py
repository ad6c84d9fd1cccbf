"""Builds the SQLAlchemy engine; every SQLite/PostgreSQL connection difference lives here."""

import hashlib
import time
from collections.abc import Iterable
from functools import partial

from sqlalchemy import Connection, Engine, create_engine, event, exc, text

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
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
                               hide_parameters=True)
        event.listen(engine, "connect", partial(_sqlite_pragmas, foreign_keys=foreign_keys))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # hide_parameters: an error's text must never carry bound values (prompts, user ids) into logs or answers.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, hide_parameters=True)


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
    # Deleted rows are overwritten with zeros, not left in free space: an erased person leaves no bytes behind.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def scrub_write_ahead_log(engine: Engine, attempts: int = 20) -> bool:
    """On SQLite, copies the write-ahead log into the database and empties it, so that the pages of rows deleted
    since (zeroed in the database by secure_delete) have no older copy left in the log; False when readers kept
    it busy throughout. PostgreSQL's files are its own: nothing to do here."""
    if engine.dialect.name != "sqlite":
        return True
    for _ in range(attempts):
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout=200")  # a reader is waited for briefly, then again
            try:
                busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
            finally:
                connection.exec_driver_sql("PRAGMA busy_timeout=30000")
        if not busy:
            return True
        time.sleep(0.05)
    return False


def let_writers_in(engine: Engine, seconds: float = 0.01) -> None:
    """Between the transactions of a long background pass: on SQLite, whose one write lock a waiting writer polls
    for with growing sleeps, a pass that takes the lock again at once starves it (ingest waited up to 1 s); a
    pause leaves it the lock. PostgreSQL writers of other rows do not wait at all."""
    if engine.dialect.name == "sqlite":
        time.sleep(seconds)


def transient_failure(error: BaseException) -> bool:
    """Whether a failed write may succeed if retried: the store was unreachable, locked, out of space or I/O
    failed (SQLite and PostgreSQL both raise these as OperationalError), not that it refused the data itself."""
    if isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


def failure_reason(error: BaseException) -> str:
    """A one-line account of a failed write for clients and logs: the driver's message, never the statement or
    its parameters (which hold prompts and user ids)."""
    original = getattr(error, "orig", None) or error
    first_line = (str(original).strip().splitlines() or [""])[0]
    return f"{type(original).__name__}: {first_line}"[:300]


def serialise(connection: Connection, keys: Iterable[str]) -> None:
    """Hold, until the transaction ends, a lock on each of `keys` (names of things a storing transaction decides:
    a user identity, a session key, a response id), so that replicas writing to one PostgreSQL take turns on
    them. Locks are taken in one fixed order, so two transactions never wait on each other in a cycle. On SQLite
    the storing transaction already holds the database's only write lock (BEGIN IMMEDIATE), so nothing is needed.
    """
    if connection.dialect.name != "postgresql":
        return
    ids = sorted({_lock_id(key) for key in keys})
    if ids:
        connection.execute(_LOCK_IN_ORDER, {"ids": ids})


def _lock_id(key: str) -> int:
    """A 64-bit advisory lock id for `key` (two keys sharing one only take turns needlessly; nothing breaks)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big",
                          signed=True)


# The aggregate consumes the sorted subquery in order, so the locks are taken in ascending id order.
_LOCK_IN_ORDER = text("SELECT count(pg_advisory_xact_lock(id)) FROM "
                      "(SELECT id FROM unnest(CAST(:ids AS bigint[])) AS id ORDER BY id) AS ordered")


def others_wrote_since(connection: Connection) -> int | None:
    """A number that changes whenever another connection commits to the store (SQLite's `data_version`): while
    it stays the same, what this connection's process remembers of the store is still true. None on PostgreSQL,
    where other processes may write at any time: remember nothing there."""
    if connection.dialect.name != "sqlite":
        return None
    return connection.exec_driver_sql("PRAGMA data_version").scalar_one()

"""Opening the DuckDB file: a lock held by another process is told apart from a damaged file, which is moved aside.

The file is a cache of the store, so a damaged one is never repaired: it is kept for inspection under another
name and a fresh file is rebuilt from the store by the next refresh.
"""

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

_LOCKED = ("Could not set lock on file", "Conflicting lock")
_CANNOT_OPEN = "Cannot open file"  # the OS refused (permissions, a missing folder): moving the file would not help
# What DuckDB says when it reads a block that is not what it wrote.
_DAMAGED = ("not a valid DuckDB database file", "Corrupt database file", "checksum", "Could not read enough bytes",
            "Could not read from file")


class WarehouseBusy(RuntimeError):
    """Another process (usually the running server) holds the DuckDB file."""


def busy_message(path: Path, error: BaseException) -> str:
    pid = re.search(r"\(PID (\d+)\)", str(error))
    holder = f"another process (PID {pid.group(1)})" if pid else "another process"
    return (f"{path} is in use by {holder}: a running server keeps it up to date; stop it first, or let it "
            f"do the work")


def is_lock_conflict(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and any(text in str(error) for text in _LOCKED)


def damage(error: BaseException) -> str | None:
    """"damaged" when the file itself is bad, "invalidated" when DuckDB stopped trusting its database after a fatal
    error (the file may be fine: reopen it), None for anything else (a query failed; the database is fine)."""
    if not isinstance(error, duckdb.Error) or is_lock_conflict(error):
        return None
    if isinstance(error, (duckdb.FatalException, duckdb.InternalException)) or "invalidated" in str(error):
        return "invalidated"
    if isinstance(error, duckdb.ConnectionException):  # closed by a reopen that then failed: try again
        return "invalidated"
    if isinstance(error, duckdb.SerializationException) or any(text in str(error) for text in _DAMAGED):
        return "damaged"
    return None


def open_or_replace(path: Path, setup: Callable[[duckdb.DuckDBPyConnection], None]) -> duckdb.DuckDBPyConnection:
    """A connection to `path`, `setup` run on it. Any failure but a lock conflict or the OS refusing to open the
    file means the file is damaged: it is moved aside and a fresh one opened in its place."""
    try:
        return _connect(path, setup)
    except duckdb.Error as error:
        if is_lock_conflict(error):
            raise WarehouseBusy(busy_message(path, error)) from None
        if _CANNOT_OPEN in str(error):
            raise
        move_aside(path, error)
    return _connect(path, setup)


def move_aside(path: Path, error: BaseException) -> Path:
    """Renames the damaged file (and its write-ahead log) to `NAME.corrupt-TIMESTAMP`, logging one clear line."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    if path.exists():
        path.rename(aside)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        wal.rename(aside.with_name(aside.name + ".wal"))
    reason = " ".join(str(error).split())
    log.error("analytics: the DuckDB file %s is damaged (%s); moved it to %s; a fresh file is rebuilt from the store "
              "by the next refresh", path, reason, aside)
    return aside


def _connect(path: Path, setup: Callable[[duckdb.DuckDBPyConnection], None]) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(path))
    try:
        setup(connection)
    except BaseException:
        connection.close()
        raise
    return connection

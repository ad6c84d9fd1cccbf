"""The running server, as other processes see it: a lock file beside the store that says who serves it and where.

On SQLite the store belongs to one server process: a second `tally serve` is refused, naming the first, and
commands that need what the server holds (the DuckDB file) find it there. The file is locked (flock) for as long
as the server runs, so a crashed server leaves no stale claim. On PostgreSQL any number of servers may run, and
each writes its own file in its own data directory.
"""

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tally.store.engine import is_sqlite, sqlalchemy_url
from tally.store.settings import Settings


class AlreadyServed(RuntimeError):
    """Another server process serves this SQLite store."""


@dataclass(frozen=True)
class RunningServer:
    pid: int
    url: str

    def describe(self) -> str:
        return f"a Tally server (process {self.pid}, at {self.url})"


def client_url(settings: Settings) -> str:
    """Where a client on this machine reaches the server (an any-address listener is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def lock_path(settings: Settings) -> Path:
    """Beside the SQLite file (it may live outside the data directory); in the data directory otherwise."""
    url = sqlalchemy_url(settings.database_url)
    if is_sqlite(url) and ":///" in url and not url.endswith(":memory:"):
        return Path(url.split(":///", 1)[1] + ".server")
    return settings.data_dir / "server.json"


@contextmanager
def serving(settings: Settings, url: str) -> Iterator[None]:
    """Claims the store for this process while the block runs; raises AlreadyServed if a server holds it."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = _read(path)
            if is_sqlite(sqlalchemy_url(settings.database_url)):
                who = found.describe() if found else "another Tally server"
                raise AlreadyServed(f"{who} already serves the store {path.with_suffix('')}; a SQLite store has "
                                    "one server (use PostgreSQL to run several)") from None
            raise AlreadyServed(f"another Tally server uses the data directory {settings.data_dir}; give each "
                                "server its own TALLY_DATA_DIR") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"pid": os.getpid(), "url": url}).encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock


def running(settings: Settings) -> RunningServer | None:
    """The server that holds this store now, if one does (its file is locked)."""
    path = lock_path(settings)
    if not path.exists():
        return None
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(path)
    return None


def _read(path: Path) -> RunningServer | None:
    try:
        found = json.loads(path.read_text() or "{}")
        return RunningServer(int(found["pid"]), str(found["url"]))
    except (OSError, ValueError, KeyError):
        return None

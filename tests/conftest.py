"""Fixtures: a migrated store on SQLite and, when TALLY_TEST_POSTGRES_URL is set, on PostgreSQL; a live server.

TALLY_TEST_CLOCK (an ISO 8601 instant, e.g. 2027-01-01T00:30:00Z) runs the session, and every Python process it
starts, on a wall clock that begins at that instant and ticks on from there.
"""

import os
import runpy
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy
import uvicorn
from sqlmodel import Session

from tally.ingest.keys import create_app
from tally.server import migrations
from tally.server.app import create_app as create_web_app
from tally.store.engine import build_engine, sqlalchemy_url, writing
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

POSTGRES_URL = os.environ.get("TALLY_TEST_POSTGRES_URL")
CLOCK_DIR = Path(__file__).parent / "clock"
CLOCK_OFFSET = "TALLY_TEST_CLOCK_OFFSET_NS"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="TALLY_TEST_POSTGRES_URL is not set"))]


def pytest_configure(config) -> None:
    destination = os.environ.get("TALLY_TEST_CLOCK")
    if not destination or CLOCK_OFFSET in os.environ:  # no shift, or this process started shifted already
        return
    instant = datetime.fromisoformat(destination)
    if instant.tzinfo is None:
        raise pytest.UsageError(f"TALLY_TEST_CLOCK={destination!r} needs a time zone (Z or +HH:MM)")
    # One offset for every process: the storage process and subprocesses stamp rows that the analytics
    # watermarks compare with this process's clock.
    os.environ[CLOCK_OFFSET] = str(round(instant.timestamp() * 1e9) - time.time_ns())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLOCK_DIR), os.environ.get("PYTHONPATH")]))
    runpy.run_path(str(CLOCK_DIR / "sitecustomize.py"))


@pytest.fixture(params=BACKENDS)
def settings(request, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh, empty store: a SQLite file, or a PostgreSQL schema of its own."""
    with fresh_store(request.param, tmp_path / "data") as fresh:
        yield fresh


@contextmanager
def fresh_store(backend: str, data_dir: Path) -> Iterator[Settings]:
    """Settings for a new, empty store on `backend` ("sqlite" or "postgresql"), dropped afterwards."""
    if backend == "sqlite":
        yield Settings(data_dir=data_dir, _env_file=None)
        return
    assert POSTGRES_URL, "TALLY_TEST_POSTGRES_URL is not set"
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(sqlalchemy_url(POSTGRES_URL))
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield Settings(data_dir=data_dir, database_url=f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}",
                       _env_file=None)
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def backend_of(settings: Settings) -> str:
    return "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
def engine(settings: Settings) -> Iterator[sqlalchemy.Engine]:
    migrations.upgrade(settings)
    engine = build_engine(settings)
    yield engine
    engine.dispose()


@dataclass
class AppKeys:
    name: str
    app_key: str
    api_key: str


def make_app(engine: sqlalchemy.Engine, name: str = "test-app", **options) -> AppKeys:
    # It reads, then writes: SQLite's write lock is taken first (a server starting beside it writes too, and a
    # deferred transaction that read before that write fails at once with "database is locked").
    with Session(writing(engine)) as db:
        app, api_key = create_app(db, name=name, **options)
        keys = AppKeys(name, app.app_key, api_key)
        db.commit()
    return keys


@pytest.fixture
def app_keys(engine) -> AppKeys:
    return make_app(engine)


def make_token(engine, scope: str = "read", **options) -> str:
    with Session(writing(engine)) as db:
        token = create_read_token(db, name=f"tests-{scope}", scope=scope, **options)
        db.commit()
    return token


@pytest.fixture
def read_token(engine) -> str:
    return make_token(engine)


@pytest.fixture
def tally_cli(settings, monkeypatch):
    """Runs the `tally` command on this test's store: its stdout, or on the expected failure all it printed."""
    from typer.testing import CliRunner

    from tally.server.cli import app as cli

    monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)

    def invoke(*args: str, code: int = 0, stdin: str | None = None) -> str:
        result = CliRunner().invoke(cli, list(args), input=stdin)
        assert result.exit_code == code, result.output
        return result.stdout if code == 0 else result.output
    return invoke


@pytest.fixture
def export_token(engine) -> str:
    """A token that may also manage export schedules."""
    return make_token(engine, "export")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings: Settings) -> LiveServer:
    """A real uvicorn serving Tally on a free loopback port, in a thread."""
    port = free_port()
    config = uvicorn.Config(create_web_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", settings, server, thread)


@pytest.fixture
def live_server(engine, settings) -> Iterator[LiveServer]:
    server = start_server(settings)
    yield server
    server.stop()


@pytest.fixture
def client(live_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        yield http


@pytest.fixture
def reader(live_server, read_token) -> Iterator[httpx.Client]:
    """An HTTP client for the read API, carrying a valid read token."""
    with httpx.Client(base_url=live_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {read_token}"}) as http:
        yield http


def wait_until(check, seconds: float = 10.0):
    """`check()`'s first truthy answer, polled every 50 ms; its last answer once `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def count_rows(engine: sqlalchemy.Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar_one()

"""Fixtures: a migrated store on SQLite and, when TALLY_TEST_POSTGRES_URL is set, on PostgreSQL; a live server."""

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy
import uvicorn
from sqlmodel import Session

from tally.ingest.keys import create_app
from tally.server import migrations
from tally.server.app import create_app as create_web_app
from tally.store.engine import build_engine, sqlalchemy_url
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

POSTGRES_URL = os.environ.get("TALLY_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="TALLY_TEST_POSTGRES_URL is not set"))]


@pytest.fixture(params=BACKENDS)
def settings(request, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh, empty store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path / "data", _env_file=None)
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(sqlalchemy_url(POSTGRES_URL))
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield Settings(data_dir=tmp_path / "data", database_url=f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}",
                       _env_file=None)
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


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
    with Session(engine) as db:
        app, api_key = create_app(db, name=name, **options)
        keys = AppKeys(name, app.app_key, api_key)
        db.commit()
    return keys


@pytest.fixture
def app_keys(engine) -> AppKeys:
    return make_app(engine)


@pytest.fixture
def read_token(engine) -> str:
    with Session(engine) as db:
        token = create_read_token(db, name="tests")
        db.commit()
    return token


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

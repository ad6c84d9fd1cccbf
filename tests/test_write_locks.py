"""Writers never fail or stall each other on SQLite's one write lock: ingest waits its turn, logins hash outside it."""

import sqlite3
import threading
import time

import httpx
import pytest

from tally.store import accounts
from tests.dashboard_support import add_account, log_in
from tests.payloads import openai_chat


def _sqlite_path(settings) -> str | None:
    url = settings.database_url
    return url.split(":///", 1)[1] if url.startswith("sqlite") else None


def test_ingest_waits_for_another_writer_instead_of_failing(client, app_keys, settings):
    """A batch reads (users, tails) before it writes; in a deferred transaction a commit by another connection in
    between fails it at once with `database is locked`. The storage process begins immediately, so it waits."""
    path = _sqlite_path(settings)
    if path is None:
        pytest.skip("PostgreSQL locks rows, not the database")
    assert client.post("/track", json=openai_chat(app_keys, user={"userId": "u1"})).status_code == 201
    holding = threading.Event()

    def other_writer() -> None:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE app SET created_at = created_at + 1")
        holding.set()
        time.sleep(1.0)
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=other_writer)
    thread.start()
    holding.wait(10)
    answer = client.post("/track", json=openai_chat(app_keys, user={"userId": "u1", "firstName": "Ann"}))
    thread.join()
    assert answer.status_code == 201, answer.text


def test_a_login_checks_the_password_outside_any_write_transaction(live_server, engine, settings, monkeypatch):
    """Argon2 takes about half a second; a login that held the write lock meanwhile stalled every ingest commit."""
    add_account(engine, "lock@example.com", "a long enough password")
    path = _sqlite_path(settings)
    writable_during_check = []
    real = accounts._hasher

    class Spy:
        """The real hasher, noting whether another connection could write while it checks a password."""

        def __getattr__(self, name):
            return getattr(real, name)

        def verify(self, hashed, password):
            probe_write()
            return real.verify(hashed, password)

    def probe_write() -> None:
        if path is not None:
            probe = sqlite3.connect(path, timeout=0.2, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                writable_during_check.append(True)
            except sqlite3.OperationalError:
                writable_during_check.append(False)
            finally:
                probe.close()

    monkeypatch.setattr(accounts, "_hasher", Spy())
    with httpx.Client(base_url=live_server.url, timeout=30) as browser:
        assert log_in(browser, "lock@example.com", "a long enough password").status_code == 303
    if path is not None:
        assert writable_during_check == [True]

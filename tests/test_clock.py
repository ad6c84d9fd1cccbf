"""Every process of a test run (the tests, a server's storage process, `tally` subprocesses) reads the tests' wall
clock, the shifted one under TALLY_TEST_CLOCK."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from tests.conftest import AppKeys, free_port, wait_until
from tests.payloads import openai_chat

TALLY = Path(sys.executable).with_name("tally")
# Generous for a loaded machine, and still minutes where a process on the real clock would be months off.
SLACK_MS = 60_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stamps(engine: sqlalchemy.Engine, interaction_id: int) -> dict[str, int]:
    """When the web process received the interaction, and when the storage process stamped its user and session."""
    with engine.connect() as conn:
        return dict(conn.execute(sqlalchemy.text(
            "SELECT i.received_at AS received_at, u.updated_at AS user_stamped, s.created_at AS session_stamped "
            "FROM interaction i JOIN end_user u ON u.id = i.user_id "
            "JOIN interaction_session s ON s.id = i.session_id WHERE i.id = :id"),
            {"id": interaction_id}).one()._mapping)


def _untimed(keys) -> dict:
    payload = openai_chat(keys, user={"userId": "clock-reader"})
    del payload["timestamps"]  # so the web process stamps it with its own clock
    return payload


def test_the_session_runs_on_the_test_clock():
    destination = os.environ.get("TALLY_TEST_CLOCK")
    if not destination:
        pytest.skip("TALLY_TEST_CLOCK is not set: the session runs on the real clock")
    start = datetime.fromisoformat(destination).timestamp() * 1000
    assert start <= _now_ms() < start + 3 * 3_600_000  # ticking from there, for at most a long session


def test_a_server_and_its_storage_process_share_the_tests_clock(client, app_keys, engine):
    before = _now_ms()
    answer = client.post("/track", json=_untimed(app_keys))
    assert answer.status_code == 201
    after = _now_ms()
    stamps = _stamps(engine, answer.json()["interaction_id"])
    assert all(before - SLACK_MS <= stamp <= after + SLACK_MS for stamp in stamps.values()), (before, stamps, after)


def test_tally_subprocesses_share_the_tests_clock(engine, settings, tmp_path):
    port = free_port()
    env = {**os.environ, "TALLY_DATA_DIR": str(settings.data_dir), "TALLY_DATABASE_URL": settings.database_url,
           "TALLY_PORT": str(port)}
    before = _now_ms()
    created = subprocess.run([str(TALLY), "apps", "create", "clock-app", "--json"], env=env, capture_output=True,
                             text=True, timeout=60, check=True)
    keys = AppKeys(**{"name" if k == "app" else k: v for k, v in json.loads(created.stdout).items()})
    server = subprocess.Popen([str(TALLY), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert wait_until(lambda: _up(http), seconds=30)
            answer = http.post("/track", json=_untimed(keys))
        assert answer.status_code == 201, answer.text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    after = _now_ms()
    with engine.connect() as conn:
        app_stamped = conn.execute(sqlalchemy.text("SELECT created_at FROM app WHERE name = 'clock-app'")).scalar_one()
    stamps = {"app_stamped": app_stamped, **_stamps(engine, answer.json()["interaction_id"])}
    assert all(before - SLACK_MS <= stamp <= after + SLACK_MS for stamp in stamps.values()), (before, stamps, after)


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False

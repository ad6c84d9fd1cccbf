"""`tally export` writes the API's CSV to a file or stdout, alone or beside a running server; `tally exports`
manages the schedules."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tally.server.cli import app as cli
from tests.conftest import count_rows, start_server
from tests.payloads import openai_chat

BASE = 1_717_000_000_000
QUERY = {"from": "2024-05-01", "to": "2024-06-30"}


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == code, result.output
        return result
    return invoke


@pytest.fixture
def served_csv(engine, settings, app_keys, read_token) -> bytes:
    """Interactions tracked through a live server, and the API's CSV of them; the server is stopped after."""
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}) as api:
            for index, text in enumerate(["=1+1", 'comma, "quote"\nnewline 🙂', "plain"]):
                assert api.post("/track", json=openai_chat(app_keys, text=text, at_ms=BASE + index)).status_code == 201
            deadline = time.monotonic() + 20
            while api.get("/api/v1/usage/totals", params=QUERY).json()["interactions"] < 3:
                assert time.monotonic() < deadline, "the analytics did not catch up"
                time.sleep(0.05)
            return api.get("/api/v1/exports/interactions.csv", params=QUERY).content
    finally:
        server.stop()


def test_export_to_stdout_and_to_a_file_equals_the_api(run, served_csv, tmp_path):
    result = run("export", "interactions", "--from", QUERY["from"], "--to", QUERY["to"], "--app", "test-app", "-o", "-")
    assert result.stdout_bytes == served_csv and "exported 3 rows" in result.stderr
    target = tmp_path / "out" / "slice.csv"
    run("export", "interactions", "--from", QUERY["from"], "--to", QUERY["to"], "-o", str(target))
    assert target.read_bytes() == served_csv and os.listdir(target.parent) == ["slice.csv"]


def test_export_mistakes_are_reported(run, engine):
    assert "unknown dataset 'everything'" in run("export", "everything", "-o", "-", code=1).stderr
    assert "sessions has no raw JSON" in run("export", "sessions", "--include-raw", "-o", "-", code=1).stderr
    assert "is not a date" in run("export", "users", "--from", "soon", "-o", "-", code=1).stderr
    assert "no app named 'nope'" in run("export", "users", "--app", "nope", "-o", "-", code=1).stderr


def test_export_beside_a_running_server_goes_through_it(served_csv, settings, engine, tmp_path):
    """A server holds the DuckDB file (one process at a time may open it): a CLI process exports through it."""
    server = start_server(settings)
    try:
        target = tmp_path / "through.csv"
        env = {**os.environ, "TALLY_DATA_DIR": str(settings.data_dir), "TALLY_DATABASE_URL": settings.database_url,
               "TALLY_PORT": server.url.rsplit(":", 1)[1]}
        tokens = count_rows(engine, "read_token")
        done = subprocess.run([str(Path(sys.executable).parent / "tally"), "export", "interactions", "--from",
                               QUERY["from"], "--to", QUERY["to"], "-o", str(target)], env=env, capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert target.read_bytes() == served_csv and b"through the running server" in done.stderr
        assert count_rows(engine, "read_token") == tokens  # its temporary token is gone
    finally:
        server.stop()


def test_schedules_from_the_command_line(run, app_keys, tmp_path):
    folder = tmp_path / "nightly"
    added = json.loads(run("exports", "schedule", "add", "interactions", "--cron", "0 2 * * *", "--app", "test-app",
                           "--timezone", "Europe/Paris", "--dir", str(folder), "--include-raw", "--json").stdout)
    assert {k: added[k] for k in ("dataset", "app", "timezone", "directory", "include_raw", "period")} == {
        "dataset": "interactions", "app": "test-app", "timezone": "Europe/Paris", "directory": str(folder),
        "include_raw": True, "period": "day"}
    listed = run("exports", "schedule", "list").stdout
    assert f"interactions of test-app, \"0 2 * * *\" Europe/Paris (each run exports the previous day) into {folder}" \
        in listed and "last never" in listed
    assert json.loads(run("exports", "runs", "--json").stdout) == []
    assert "set the day of month or the day of week" in run("exports", "schedule", "add", "users", "--cron",
                                                           "0 2 1 * 1", code=1).stderr
    assert "unknown time zone" in run("exports", "schedule", "add", "users", "--cron", "0 2 * * *", "--timezone",
                                      "Nowhere", code=1).stderr
    assert f"removed schedule {added['id']}" in run("exports", "schedule", "remove", str(added["id"])).stdout
    assert "no export schedule" in run("exports", "schedule", "remove", str(added["id"]), code=1).stderr
    assert json.loads(run("exports", "schedule", "list", "--json").stdout) == []

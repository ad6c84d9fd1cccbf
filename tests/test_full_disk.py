"""A full disk: clients are told to retry (503 with Retry-After), never acknowledged for what was not stored,
the log says it once rather than a traceback per request, and ingest resumes when space is freed."""

import logging
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tally.server import migrations
from tally.store.engine import build_engine
from tally.store.settings import Settings
from tests.conftest import make_app, start_server
from tests.payloads import openai_chat


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB file system (tmpfs), so that the disk really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        if os.environ.get("TALLY_TEST_REQUIRE_MOUNT"):
            pytest.fail("cannot mount a tmpfs (run as root)")
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_full_disk_is_a_503_then_ingest_resumes(small_disk, caplog):
    settings = Settings(data_dir=small_disk / "data", analytics_refresh_seconds=3600, _env_file=None)
    migrations.upgrade(settings)
    engine = build_engine(settings)
    keys = make_app(engine)
    server = start_server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            acknowledged = [client.post("/track", json=openai_chat(keys)).json()["interaction_id"]]
            filler = _fill(small_disk)
            answers: list[int] = []
            with caplog.at_level(logging.ERROR):
                # Until the WAL needs a page the disk no longer has, then 30 more
                while len(answers) < 200 and answers.count(503) < 30:
                    answer = client.post("/track", json=openai_chat(keys, text="x" * 20_000))
                    answers.append(answer.status_code)
                    if answer.status_code == 201:
                        acknowledged.append(answer.json()["interaction_id"])
            assert answers.count(503) == 30 and set(answers) <= {201, 503}, answers
            refused = client.post("/track", json=openai_chat(keys))
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
            assert refused.json()["error"] == "storage_unavailable"
            failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(failures) <= 3, [r.getMessage() for r in failures]
            filler.unlink()
            assert client.post("/track", json=openai_chat(keys)).status_code == 201
        with engine.connect() as conn:
            stored = set(conn.execute(text("SELECT id FROM interaction")).scalars())
        assert set(acknowledged) <= stored
    finally:
        server.stop()
        engine.dispose()


def test_serve_on_a_full_disk_says_so(small_disk, monkeypatch):
    from typer.testing import CliRunner

    from tally.server.cli import app as cli

    _fill(small_disk)
    monkeypatch.setenv("TALLY_DATA_DIR", str(small_disk / "data"))
    monkeypatch.delenv("TALLY_DATABASE_URL", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--port", "1"])
    assert result.exit_code == 1, result.output
    assert "cannot write to the store" in result.output and "bytes free" in result.output
    assert "Free some space" in result.output

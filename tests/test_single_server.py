"""A SQLite store has one server: a second one is refused naming the first, and CLI commands find it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_until

TALLY = Path(sys.executable).with_name("tally")


def _env(data_dir: Path, port: int) -> dict:
    env = {**os.environ, "TALLY_DATA_DIR": str(data_dir), "TALLY_PORT": str(port)}
    env.pop("TALLY_DATABASE_URL", None)
    return env


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_a_second_server_on_one_sqlite_store_is_refused_naming_the_first(tmp_path):
    data, port = tmp_path / "data", free_port()
    first = subprocess.Popen([str(TALLY), "serve"], env=_env(data, port), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: _up(f"http://127.0.0.1:{port}"), seconds=30)
        second = subprocess.run([str(TALLY), "serve"], env=_env(data, free_port()), capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        assert f"process {first.pid}" in second.stderr and f"http://127.0.0.1:{port}" in second.stderr
        refresh = subprocess.run([str(TALLY), "analytics", "refresh"], env=_env(data, free_port()),
                                 capture_output=True, text=True, timeout=60)
        assert refresh.returncode == 1 and f"process {first.pid}" in refresh.stderr
        # The export command finds the server where it listens, though TALLY_PORT says otherwise.
        export = subprocess.run([str(TALLY), "export", "users", "-o", "-"], env=_env(data, free_port()),
                                capture_output=True, text=True, timeout=60)
        assert export.returncode == 0, export.stderr
        assert export.stdout.startswith("id,app_id,user_id") and "through the running server" in export.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    after = subprocess.Popen([str(TALLY), "serve"], env=_env(data, port), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:  # the claim ended with the first server
        assert wait_until(lambda: _up(f"http://127.0.0.1:{port}"), seconds=30)
    finally:
        after.send_signal(signal.SIGTERM)
        after.wait(timeout=30)

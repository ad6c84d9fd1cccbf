"""`make run`'s command, `tally serve --demo`, on an empty data directory: demo data, a printed login that works,
and a dashboard with the demo traffic on it."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_until
from tests.dashboard_support import csrf_of

TALLY = Path(sys.executable).with_name("tally")


def test_serve_demo_prints_a_login_that_opens_a_dashboard_with_data(tmp_path):
    port = free_port()
    env = {**os.environ, "TALLY_DATA_DIR": str(tmp_path / "data"), "TALLY_PORT": str(port),
           "TALLY_ANALYTICS_REFRESH_SECONDS": "0.5"}
    env.pop("TALLY_DATABASE_URL", None)
    server = subprocess.Popen([str(TALLY), "serve", "--demo"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        printed = ""
        for line in server.stdout:
            printed += line
            if "dashboard: http" in line and "Tally on" in printed:
                break
        email, password = re.search(r"dashboard:\s+(\S+@\S+) / (\S+)", printed).groups()
        assert f"http://127.0.0.1:{port}/dashboard" in printed and "appKey:" in printed
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as browser:
            assert wait_until(lambda: _up(browser), seconds=30)
            form = browser.get("/login").text
            browser.post("/login", data={"email": email, "password": password, "csrf": csrf_of(form)})
            assert wait_until(lambda: "demo-support-bot" in browser.get("/dashboard/users?range=90d").text, 30)
            assert "No interactions" not in browser.get("/dashboard").text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _up(browser: httpx.Client) -> bool:
    try:
        return browser.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False

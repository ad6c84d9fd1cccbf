"""Shared by the dashboard tests: a live server with an account, and logging in the way a browser does."""

import re

import httpx
from sqlmodel import Session

from tally.store.accounts import create_account, hash_password
from tally.store.engine import writing
from tests.conftest import LiveServer, start_server

EMAIL, PASSWORD = "analyst@example.com", "correct horse battery"
CHROMIUM = "/usr/bin/chromium"
# what the machine's closed network needs: no background fetches, no sandbox as root (see the env notes)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def add_account(engine, email: str = EMAIL, password: str = PASSWORD, *, role: str = "analyst") -> None:
    with Session(writing(engine)) as db:  # it reads, then writes: see conftest.make_app
        create_account(db, email=email, password_hash=hash_password(password), role=role)
        db.commit()


def start_dashboard(settings) -> LiveServer:
    return start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def log_in(client: httpx.Client, email: str = EMAIL, password: str = PASSWORD, **extra) -> httpx.Response:
    """GET the form (which sets the CSRF cookie), then POST it, as a browser would."""
    form = client.get("/login")
    return client.post("/login", data={"email": email, "password": password, "csrf": csrf_of(form.text), **extra})

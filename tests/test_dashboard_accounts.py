"""Dashboard accounts from the command line, the demo login `make run` prints, and images behind the login."""

import base64
import json

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from tally.server.cli import app as cli
from tally.server.demo import DEMO_EMAIL, ensure_demo_app
from tally.store.accounts import authenticate
from tests.dashboard_support import add_account, log_in, start_dashboard
from tests.payloads import openai_chat

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
                       "RU5ErkJggg==")


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)

    def invoke(*args: str, stdin: str | None = None, code: int = 0):
        result = CliRunner().invoke(cli, list(args), input=stdin)
        assert result.exit_code == code, result.output
        return result
    return invoke


def _can_log_in(engine, email: str, password: str) -> bool:
    with Session(engine) as db:
        return authenticate(db, email=email, password=password)[0] is not None


def test_users_create_and_set_password(run, engine):
    assert "created admin account ann@example.com" in run(
        "users", "create", "Ann@Example.com", "--role", "admin", "--password-stdin", stdin="first password\n").stdout
    assert _can_log_in(engine, "ann@example.com", "first password")
    assert "already exists" in run("users", "create", "ann@example.com", "--password-stdin",
                                   stdin="other password\n", code=1).output
    assert "at least 8 characters" in run("users", "create", "bob@example.com", "--password-stdin",
                                          stdin="short\n", code=1).output
    run("users", "set-password", "ann@example.com", stdin="second password\nsecond password\n")  # the prompt
    assert _can_log_in(engine, "ann@example.com", "second password")
    assert not _can_log_in(engine, "ann@example.com", "first password")
    assert "no account" in run("users", "set-password", "zed@example.com", "--password-stdin",
                               stdin="whatever long\n", code=1).output
    assert "not an email" in run("users", "create", "ann", "--password-stdin", stdin="long enough\n", code=1).output


def test_the_demo_login_is_created_once_and_kept(engine, settings):
    first = ensure_demo_app(engine, settings)
    assert first["dashboard_email"] == DEMO_EMAIL and _can_log_in(engine, DEMO_EMAIL, first["dashboard_password"])
    assert ensure_demo_app(engine, settings) == first
    saved = json.loads((settings.data_dir / "demo-app.json").read_text())
    assert saved == first and (settings.data_dir / "demo-app.json").stat().st_mode & 0o777 == 0o600


def test_images_are_served_to_a_login_only_and_only_as_images(engine, settings, app_keys):
    from tally.store.models import InteractionImage

    add_account(engine)
    server = start_dashboard(settings)
    try:
        with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
            for filename, content in (("cat.png", PNG), ("evil.svg", b"<svg onload='alert(1)'></svg>")):
                upload = {"reconify": {"format": "openai", "type": "image_upload", "appKey": app_keys.app_key,
                                       "apiKey": app_keys.api_key},
                          "upload": {"filename": filename, "data": {"b64_json": base64.b64encode(content).decode()}}}
                assert browser.post("/upload", json=upload).status_code == 201
            assert browser.post("/track", json=openai_chat(app_keys)).status_code == 201
            with Session(engine) as db:
                ids = {image.filename: image.id for image in db.exec(select(InteractionImage))}
            assert browser.get(f"/dashboard/images/{ids['cat.png']}").status_code == 303
            log_in(browser)
            png = browser.get(f"/dashboard/images/{ids['cat.png']}")
            assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content == PNG
            svg = browser.get(f"/dashboard/images/{ids['evil.svg']}")
            assert svg.headers["content-type"] == "application/octet-stream"
            assert svg.headers["content-disposition"].startswith("attachment")
            assert "sandbox" in svg.headers["content-security-policy"]
            assert browser.get("/dashboard/images/999999").status_code == 404
    finally:
        server.stop()

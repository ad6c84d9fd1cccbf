"""The dashboard's exports page: a filtered view as CSV, schedules with their history, admin-only changes."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import wait_until
from tests.dashboard_support import add_account, csrf_of, log_in, start_dashboard
from tests.payloads import openai_chat

ADMIN = ("admin@example.com", "admin password")
VIEWER = ("viewer@example.com", "viewer password")
POSTED_AT_MS = 1_763_985_600_000  # 2025-11-24T12:00:00Z: the exported days hold it on any date, in any zone


@pytest.fixture
def server(engine, settings, app_keys):
    add_account(engine)
    add_account(engine, *ADMIN, role="admin")
    add_account(engine, *VIEWER, role="viewer")
    live = start_dashboard(settings)
    with httpx.Client(base_url=live.url) as http:
        for text in ("=SUM(A1)", "plain, with a comma"):
            assert http.post("/track", json=openai_chat(app_keys, text=text, at_ms=POSTED_AT_MS)).status_code == 201
    yield live
    live.stop()


@contextmanager
def _browser(server, account=None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        log_in(browser, *(account or ()))
        yield browser


def test_a_view_downloads_as_the_same_csv_the_api_serves(server, read_token):
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/dashboard/exports/interactions.csv", follow_redirects=False).status_code == 303
    posted_day = datetime.fromtimestamp(POSTED_AT_MS / 1000, ZoneInfo(server.settings.analytics_timezone)).date()
    days = {"from": (posted_day - timedelta(days=1)).isoformat(), "to": posted_day.isoformat()}
    with _browser(server) as browser, httpx.Client(base_url=server.url,
                                                   headers={"Authorization": f"Bearer {read_token}"}) as api:
        assert wait_until(lambda: "plain, with a comma" in api.get("/api/v1/interactions", params=days).text)
        for dataset in ("interactions", "sessions", "users", "daily_usage"):
            mine = browser.get(f"/dashboard/exports/{dataset}.csv", params={"range": "custom", **days})
            assert mine.status_code == 200 and mine.headers["content-type"].startswith("text/csv")
            theirs = api.get(f"/api/v1/exports/{dataset}.csv", params=days)
            assert mine.content == theirs.content, dataset
            assert mine.headers["content-disposition"] == theirs.headers["content-disposition"] == (
                f'attachment; filename="{dataset}_{days["from"]}_{days["to"]}.csv"')
        assert "'=SUM(A1)" in browser.get("/dashboard/exports/interactions.csv", params=days).text
        assert browser.get("/dashboard/exports/everything.csv").status_code == 404


def test_an_admin_schedules_an_export_and_sees_its_history(server, settings, engine):
    with _browser(server, ADMIN) as browser:
        page = browser.get("/dashboard/exports")
        assert "No export runs on a schedule yet" in page.text
        refused = browser.post("/dashboard/exports/schedules", data={
            "csrf": csrf_of(page.text), "dataset": "users", "cron": "61 2 * * *", "timezone": "Europe/Paris"})
        assert refused.status_code == 422 and "cron:" in refused.text
        hour = (datetime.now(UTC).hour + 12) % 24
        added = browser.post("/dashboard/exports/schedules", data={
            "csrf": csrf_of(page.text), "dataset": "interactions", "cron": f"0 {hour} * * *", "timezone": "UTC"})
        assert added.status_code == 303
        page = browser.get("/dashboard/exports")
        assert f"0 {hour} * * *" in page.text and "never" in page.text
        with engine.begin() as conn:  # what the clock does at the next tick
            schedule_id = conn.execute(text("SELECT id FROM export_schedule")).scalar_one()
            conn.execute(text("UPDATE export_schedule SET next_run_at = 1"))
        assert wait_until(lambda: "succeeded" in browser.get("/dashboard/exports").text, seconds=20)
        history = browser.get("/dashboard/exports").text
        assert "interactions_all_" in history and settings.exports_folder.exists()
        removed = browser.post(f"/dashboard/exports/schedules/{schedule_id}/remove", data={"csrf": csrf_of(history)})
        assert removed.status_code == 303
        assert "No export runs on a schedule yet" in browser.get("/dashboard/exports").text


def test_a_viewer_neither_downloads_nor_schedules_and_every_form_needs_its_token(server):
    with _browser(server, VIEWER) as viewer:
        page = viewer.get("/dashboard/exports")
        assert page.status_code == 200 and "Add a schedule" not in page.text and "users.csv" not in page.text
        assert viewer.get("/dashboard/exports/users.csv").status_code == 403
        assert viewer.get("/dashboard").status_code == 200  # the pages stay open to a viewer
        refused = viewer.post("/dashboard/exports/schedules", data={
            "csrf": csrf_of(page.text), "dataset": "users", "cron": "0 2 * * *", "timezone": "UTC"})
        assert refused.status_code == 403
    with _browser(server) as analyst:  # an analyst may
        page = analyst.get("/dashboard/exports")
        assert "Add a schedule" in page.text and analyst.get("/dashboard/exports/users.csv").status_code == 200
    with _browser(server, ADMIN) as admin:
        forged = admin.post("/dashboard/exports/schedules", data={
            "csrf": "forged", "dataset": "users", "cron": "0 2 * * *", "timezone": "UTC"})
        assert forged.status_code == 403
        assert "No export runs on a schedule yet" in admin.get("/dashboard/exports").text

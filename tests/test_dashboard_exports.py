"""The dashboard's exports page: a filtered view as CSV, schedules with their history, admin-only changes."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest

from tally.server.export_jobs import JOBSTORE
from tests.conftest import wait_until
from tests.dashboard_support import add_account, csrf_of, log_in, start_dashboard
from tests.payloads import openai_chat

ADMIN = ("admin@example.com", "admin password")


@pytest.fixture
def server(engine, settings, app_keys):
    add_account(engine)
    add_account(engine, *ADMIN, admin=True)
    live = start_dashboard(settings)
    with httpx.Client(base_url=live.url) as http:
        for text in ("=SUM(A1)", "plain, with a comma"):
            assert http.post("/track", json=openai_chat(app_keys, text=text,
                                                         at_ms=int(time.time() * 1000) - 86_400_000)).status_code == 201
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
    days = {"from": datetime.now(UTC).strftime("%Y-%m-01"), "to": datetime.now(UTC).strftime("%Y-%m-%d")}
    with _browser(server) as browser, httpx.Client(base_url=server.url,
                                                   headers={"Authorization": f"Bearer {read_token}"}) as api:
        assert wait_until(lambda: "plain, with a comma" in api.get("/api/v1/interactions", params=days).text)
        for dataset in ("interactions", "sessions", "users", "daily_usage"):
            mine = browser.get(f"/dashboard/exports/{dataset}.csv", params={"range": "custom", **days})
            assert mine.status_code == 200 and mine.headers["content-type"].startswith("text/csv")
            assert mine.content == api.get(f"/api/v1/exports/{dataset}.csv", params=days).content, dataset
        assert "'=SUM(A1)" in browser.get("/dashboard/exports/interactions.csv", params=days).text
        assert browser.get("/dashboard/exports/everything.csv").status_code == 404


def test_an_admin_schedules_an_export_and_sees_its_history(server, settings):
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
        [job] = [job for job in server.server.config.app.inner.state.scheduler.get_jobs(jobstore=JOBSTORE)]
        job.modify(next_run_time=datetime.now(UTC))  # what the clock does at the next tick
        assert wait_until(lambda: "succeeded" in browser.get("/dashboard/exports").text, seconds=20)
        history = browser.get("/dashboard/exports").text
        assert "interactions_all_" in history and (settings.data_dir / "exports").exists()
        schedule_id = job.id.removeprefix("export-")
        removed = browser.post(f"/dashboard/exports/schedules/{schedule_id}/remove", data={"csrf": csrf_of(history)})
        assert removed.status_code == 303
        assert "No export runs on a schedule yet" in browser.get("/dashboard/exports").text


def test_only_an_admin_changes_schedules_and_every_form_needs_its_token(server):
    with _browser(server) as analyst:
        page = analyst.get("/dashboard/exports")
        assert page.status_code == 200 and "Add a schedule" not in page.text
        refused = analyst.post("/dashboard/exports/schedules", data={
            "csrf": csrf_of(page.text), "dataset": "users", "cron": "0 2 * * *", "timezone": "UTC"})
        assert refused.status_code == 403
    with _browser(server, ADMIN) as admin:
        forged = admin.post("/dashboard/exports/schedules", data={
            "csrf": "forged", "dataset": "users", "cron": "0 2 * * *", "timezone": "UTC"})
        assert forged.status_code == 403
        assert "No export runs on a schedule yet" in admin.get("/dashboard/exports").text

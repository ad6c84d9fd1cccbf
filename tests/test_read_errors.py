"""Odd input to the read API and the dashboard gets a 400 or 404 in the error shape, never a 500 or a dropped
connection; an unexpected failure is a 500 in the same shape, logged once; images are served only as images."""

import base64
import json
import logging

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from tally.store.limits import MAX_ID
from tests.conftest import start_server, wait_until
from tests.dashboard_support import add_account, csrf_of, log_in
from tests.payloads import openai_chat

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
                       "RU5ErkJggg==")
TOO_BIG = str(MAX_ID + 1)


def _cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.fixture
def server(engine, settings, app_keys):
    add_account(engine, role="admin")
    live = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))
    yield live
    live.stop()


@pytest.fixture
def api(server, export_token):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {export_token}"}, timeout=30) as http:
        yield http


@pytest.fixture
def browser(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert log_in(http).status_code == 303
        yield http


def _error(answer: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json" and answer.headers.get("connection") != "close"
    body = answer.json()
    assert body["status"] == "error" and body["error"] == code and body["message"], body
    if field is not None:
        assert field in {error["field"] for error in body["errors"]}, body
    return body


@pytest.mark.parametrize("path, status, code, field", [
    (f"/api/v1/interactions/{TOO_BIG}", 404, "not_found", None),
    (f"/api/v1/users/{TOO_BIG}", 404, "not_found", None),
    (f"/api/v1/sessions/{TOO_BIG}", 404, "not_found", None),
    (f"/api/v1/images/{TOO_BIG}", 404, "not_found", None),
    (f"/api/v1/exports/schedules/{TOO_BIG}", 404, "not_found", None),
    (f"/api/v1/exports/schedules/{TOO_BIG}/runs", 404, "not_found", None),
    ("/api/v1/interactions/0", 404, "not_found", None),
    ("/api/v1/users/abc", 404, "not_found", None),
    ("/api/v1/usage/totals?to=99999999999999999999", 400, "invalid_filter", "to"),
    (f"/api/v1/usage?to={'9' * 5000}", 400, "invalid_filter", "to"),
    ("/api/v1/usage?from=²", 400, "invalid_filter", "from"),
    ("/api/v1/usage?from=١٢٣", 400, "invalid_filter", "from"),
    ("/api/v1/usage/totals?user=99999999999999999999", 400, "invalid_filter", "user"),
    ("/api/v1/usage/totals?app=²", 400, "invalid_filter", "app"),
    ("/api/v1/interactions?session=99999999999999999999", 400, "invalid_filter", "session"),
    ("/api/v1/usage?granularity=hour&from=1970-01-01", 400, "invalid_filter", "granularity"),
    ("/api/v1/usage/active-users?from=1970-01-01", 400, "invalid_filter", "granularity"),
    (f"/api/v1/users?cursor={_cursor('x', 'y')}", 400, "invalid_filter", "cursor"),
    (f"/api/v1/users?sort=cost&cursor={_cursor(1.5, 'y')}", 400, "invalid_filter", "cursor"),
    (f"/api/v1/users?sort=tokens&cursor={_cursor(1.5, 2)}", 400, "invalid_filter", "cursor"),
    (f"/api/v1/sessions?cursor={_cursor('x', 'y')}", 400, "invalid_filter", "cursor"),
    (f"/api/v1/sessions?cursor={_cursor(True, 1)}", 400, "invalid_filter", "cursor"),
    (f"/api/v1/interactions?cursor={_cursor('x', 'y')}", 400, "invalid_filter", "cursor"),
    (f"/api/v1/interactions?cursor={_cursor(2**70, 1)}", 400, "invalid_filter", "cursor"),
    (f"/api/v1/interactions?cursor={base64.urlsafe_b64encode(b'[' * 10_000).decode()}", 400, "invalid_filter",
     "cursor"),
    ("/api/v1/sessions/1?cursor=x-y", 400, "invalid_filter", "cursor"),
    (f"/api/v1/sessions/1?cursor=1-{TOO_BIG}", 400, "invalid_filter", "cursor"),
    ("/api/v1/exports/schedules?cursor=²", 400, "invalid_filter", "cursor"),
    ("/api/v1/exports/interactions.csv?from=²", 400, "invalid_filter", "from"),
    ("/api/v1/nowhere", 404, "not_found", None),
    ("/api/v1/usage/models?limit=100000", 400, "invalid_filter", "limit"),
])
def test_odd_input_is_a_400_or_404_in_the_error_shape(api, path, status, code, field):
    _error(api.get(path), status, code, field)
    assert api.get("/api/v1/analytics/status").status_code == 200  # the connection is still good


def test_the_far_future_and_past_are_ranges_like_any_other(api, app_keys):
    assert api.post("/track", json=openai_chat(app_keys)).status_code == 201
    assert wait_until(lambda: api.get("/api/v1/usage/totals").json()["interactions"] == 1)
    assert api.get("/api/v1/usage/totals", params={"to": "9999-12-31"}).json()["interactions"] == 0  # its last 30 days
    for params in ({"from": "0001-01-01", "to": "9999-12-31"}, {"from": "1900-01-01T00:00:00Z"},
                   {"from": "2020-01-01", "to": "9999-12-31T23:59:59.999-14:00"},
                   {"from": "0", "to": "253402300799999"}):
        assert api.get("/api/v1/usage/totals", params=params).json()["interactions"] == 1, params
        assert api.get("/api/v1/usage", params={**params, "granularity": "month"}).status_code == 200, params
    export = api.get("/api/v1/exports/interactions.csv", params={"from": "2020-01-01", "to": "9999-12-31"})
    assert export.status_code == 200 and export.text.count("\r\n") == 2
    assert "interactions_2020-01-01_9999-12-31.csv" in export.headers["content-disposition"]


def test_routes_and_methods_that_do_not_exist_answer_in_the_error_shape(client):
    _error(client.get("/api/v1/nope"), 404, "not_found")
    _error(client.delete("/api/v1/usage"), 405, "method_not_allowed")
    _error(client.get("/nothing-here"), 404, "not_found")


def test_schedules_the_store_cannot_hold_are_refused(api):
    _error(api.post("/api/v1/exports/schedules", json={"dataset": "users", "cron": "0 2 * * *", "app": 2**70}),
           422, "invalid_request", "app")
    for zone in ("Europe", "Etc/" + "x" * 300):
        _error(api.post("/api/v1/exports/schedules", json={"dataset": "users", "cron": "0 2 * * *", "timezone": zone}),
               422, "invalid_schedule", "timezone")
    cron = ",".join(["0"] * 120) + " 2 * * *"
    _error(api.post("/api/v1/exports/schedules", json={"dataset": "users", "cron": cron}), 422, "invalid_schedule",
           "cron")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_failure_is_a_500_in_the_error_shape_logged_once(api, browser, engine):
    with engine.begin() as conn:  # the store loses a table behind the server's back
        conn.execute(text("ALTER TABLE interaction_image RENAME TO interaction_image_gone"))
    records = _Records()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        body = _error(api.get("/api/v1/images/1"), 500, "internal_error")
        assert "interaction_image" not in body["message"]  # the details go to the log, not to the client
        page = browser.get("/dashboard/images/1")
        assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
        assert 'href="/dashboard/models' in page.text and "Log out" in page.text
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    failures = [record for record in records.records if record.exc_info]
    assert [record.getMessage() for record in failures] == [
        "unhandled error answering GET /api/v1/images/1", "unhandled error answering GET /dashboard/images/1"]
    assert api.get("/api/v1/analytics/status").status_code == 200


DASHBOARD = [
    (f"/dashboard/users/{TOO_BIG}", 404), ("/dashboard/users/99999999999999999999", 404),
    (f"/dashboard/sessions/{TOO_BIG}", 404), (f"/dashboard/interactions/{TOO_BIG}", 404),
    (f"/dashboard/images/{TOO_BIG}", 404), ("/dashboard/users/abc", 404), ("/dashboard/nowhere", 404),
    ("/dashboard/exports/nothing.csv", 404), ("/dashboard/static/plotly-0.0.0.min.js", 404),
    ("/dashboard?to=9999-12-31", 200), ("/dashboard?range=custom&from=0001-01-01&to=9999-12-31", 200),
    ("/dashboard/models?range=custom&from=0001-01-05", 200), ("/dashboard/sessions?to=9999-12-31", 200),
    ("/dashboard?user=99999999999999999999", 400), ("/dashboard?from=²", 400), ("/dashboard?from=20240501", 400),
    ("/dashboard/interactions?session=99999999999999999999", 400), ("/dashboard/users?sort=height", 400),
    (f"/dashboard/users?cursor={_cursor('x', 'y')}", 400), (f"/dashboard/sessions?cursor={_cursor('x', 'y')}", 400),
    (f"/dashboard/interactions?cursor={_cursor('x', 'y')}", 400),
    (f"/dashboard/users/1?cursor={_cursor('x', 'y')}", 400), ("/dashboard/sessions/1?cursor=x-y", 400),
]


def test_the_dashboard_answers_odd_input_with_its_error_page(browser, app_keys):
    assert browser.post("/track", json=openai_chat(app_keys, user={"userId": "u1"})).status_code == 201
    for path, status in DASHBOARD:
        answer = browser.get(path)
        assert answer.status_code == status, (path, answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html"), path
        assert 'href="/dashboard/models' in answer.text, path  # the navigation stays
    refused = browser.post("/dashboard/exports/schedules", data={
        "csrf": csrf_of(browser.get("/dashboard/exports").text), "dataset": "users", "cron": "0 2 * * *",
        "app": "²"})
    assert refused.status_code == 422 and "app" in refused.text


def test_unknown_dashboard_paths_are_html_even_before_logging_in(client):
    answer = client.get("/dashboard/nowhere")
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert 'href="/login"' in answer.text


def _upload(http: httpx.Client, keys, filename: str, content: bytes) -> None:
    answer = http.post("/upload", json={
        "reconify": {"format": "openai", "type": "image_upload", "appKey": keys.app_key, "apiKey": keys.api_key},
        "upload": {"filename": filename, "data": {"b64_json": base64.b64encode(content).decode()}}})
    assert answer.status_code == 201, answer.text


def test_images_are_served_only_as_images_by_the_api_and_the_dashboard(api, browser, engine, settings, app_keys):
    from tally.store.models import InteractionImage

    _upload(api, app_keys, "cat.png", PNG)
    _upload(api, app_keys, "evil.html", b"<script>alert(1)</script>")
    with Session(engine) as db:
        images = {image.filename: image for image in db.exec(select(InteractionImage))}
    for http, prefix in ((api, "/api/v1/images"), (browser, "/dashboard/images")):
        png = http.get(f"{prefix}/{images['cat.png'].id}")
        assert png.status_code == 200 and png.content == PNG and png.headers["content-type"] == "image/png"
        assert png.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in png.headers["content-security-policy"]
        html = http.get(f"{prefix}/{images['evil.html'].id}")
        assert html.headers["content-type"] == "application/octet-stream" and html.content.startswith(b"<script")
        assert html.headers["content-disposition"].startswith("attachment")
        assert html.headers["x-content-type-options"] == "nosniff"
    (settings.data_dir / images["cat.png"].path).unlink()
    _error(api.get(f"/api/v1/images/{images['cat.png'].id}"), 404, "not_found")
    gone = browser.get(f"/dashboard/images/{images['cat.png'].id}")
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("text/html")

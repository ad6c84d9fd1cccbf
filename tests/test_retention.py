"""Retention: an app's texts, raw JSON and images older than its days are removed by the pass, beside a running
server; its numbers, sessions and every long-range figure stay whole; other apps are untouched; one replica runs
each night's pass; the CLI and the admin API set it."""

import base64
import json
import time

import httpx
import sqlalchemy

from tally.store.retention import DAY_MS, apply_retention, claim_day
from tests.analytics_store import app_id_of
from tests.conftest import make_app, make_token, start_server, wait_until
from tests.dashboard_support import add_account, log_in
from tests.payloads import openai_chat

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
                       "RU5ErkJggg==")


def _rows(engine, app_id: int) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sqlalchemy.text(
            "SELECT id, input_text, request_json, response_json, prompt_tokens, session_id, expired_at "
            "FROM interaction WHERE app_id = :a ORDER BY request_at"), {"a": app_id}))


def test_retention_removes_old_content_and_keeps_every_number(engine, settings, tally_cli):
    kept, other = make_app(engine, "kept"), make_app(engine, "other")
    assert tally_cli("apps", "set-retention", "kept", "--raw-days", "7").strip() == \
        "kept: content 7 days, images 7 days"
    assert tally_cli("apps", "set-retention", "kept", "--raw-days", "7", "--uploads-days", "1").strip() == \
        "kept: content 7 days, images 1 day"
    kept_id = app_id_of(engine, kept)
    now = int(time.time() * 1000)
    day = now // DAY_MS * DAY_MS
    server = start_server(settings)
    reader = {"Authorization": f"Bearer {make_token(engine)}"}
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=reader) as client:
            user = {"userId": "long-talker"}
            for at in (day - 30 * DAY_MS, day - 10 * DAY_MS, now - 60_000):  # one session spanning a month
                posted = client.post("/track", json=openai_chat(kept, user=user, session="s-1", at_ms=at,
                                                                text="an old secret"))
                assert posted.status_code == 201
            assert client.post("/track", json=openai_chat(other, at_ms=day - 30 * DAY_MS)).status_code == 201
            image = {"reconify": {"format": "openai", "type": "image_upload", "appKey": kept.app_key,
                                  "apiKey": kept.api_key},
                     "upload": {"filename": "old-1700000000-0.png",
                                "data": {"b64_json": base64.b64encode(PNG).decode()}}}
            assert client.post("/upload", json=image).status_code == 201
            window = {"from": day - 40 * DAY_MS, "to": day + DAY_MS, "app": kept_id}
            before = wait_until(lambda: (t := client.get("/api/v1/usage/totals", params=window).json())
                                ["interactions"] == 3 and t)
            series_before = client.get("/api/v1/usage", params=window).json()["series"]

            # Beside the running server: the pass as the next night runs it, in batches of one.
            removed = apply_retention(engine, now=now + DAY_MS + 60_000, data_dir=settings.data_dir, batch=1)
            assert (removed.interactions, removed.images) == (2, 1)
            again = apply_retention(engine, now=now + DAY_MS + 60_000, data_dir=settings.data_dir)
            assert (again.interactions, again.images) == (0, 0)

            rows = _rows(engine, kept_id)
            assert [(r.input_text, r.request_json, r.response_json) for r in rows[:2]] == [("", "{}", "{}")] * 2
            assert all(r.expired_at for r in rows[:2]) and rows[2].expired_at is None
            assert "an old secret" in rows[2].input_text
            assert [r.prompt_tokens for r in rows] == [21] * 3 and len({r.session_id for r in rows}) == 1
            assert "secret" not in json.dumps(client.get(f"/api/v1/interactions/{rows[0].id}").json()["request"])
            assert _rows(engine, app_id_of(engine, other))[0].input_text == "Tell a cat joke"  # no retention: untouched
            assert not list((settings.data_dir / "uploads").rglob("*.png"))

            # The analytics follow (empty previews), and every number over the whole range stays.
            wait_until(lambda: all(not i["input_preview"] for i in client.get(
                "/api/v1/interactions", params=window).json()["items"][1:]))
            after = client.get("/api/v1/usage/totals", params=window).json()
            assert {**after, "freshness": None} == {**before, "freshness": None}
            assert client.get("/api/v1/usage", params=window).json()["series"] == series_before
            sessions = client.get("/api/v1/sessions", params=window).json()["items"]
            assert [s["turns"] for s in sessions] == [3]
    finally:
        server.stop()


def test_one_replica_claims_each_night(engine):
    assert claim_day(engine, day="2026-12-01", replica="a", now=1) is True
    assert claim_day(engine, day="2026-12-01", replica="b", now=2) is False
    assert claim_day(engine, day="2026-12-02", replica="b", now=3) is True


def test_retention_through_the_admin_api_and_its_checks(engine, settings, tally_cli):
    make_app(engine, "alpha")
    assert "--raw-days N, or --forever" in tally_cli("apps", "set-retention", "alpha", code=2)
    assert "from 1 to" in tally_cli("apps", "set-retention", "alpha", "--raw-days", "0", code=2)
    server = start_server(settings)
    admin = {"Authorization": f"Bearer {make_token(engine, 'admin')}"}
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=admin) as api:
            assert api.put("/api/v1/apps/alpha/retention", json={"raw_days": 0}).status_code == 422
            assert api.put("/api/v1/apps/nope/retention", json={"raw_days": 3}).status_code == 404
            set_ = api.put("/api/v1/apps/alpha/retention", json={"raw_days": 30, "uploads_days": 7})
            assert set_.json() == {"app": "alpha", "raw_days": 30, "uploads_days": 7}
            assert api.get("/api/v1/apps").json()["apps"][0]["raw_retention_days"] == 30
            assert api.delete("/api/v1/apps/alpha/retention").json()["raw_days"] is None
            assert [e["action"] for e in api.get("/api/v1/audit").json()["events"]].count("app.retention") == 2
    finally:
        server.stop()


def test_admins_see_each_apps_settings_and_expired_content_is_marked(engine, settings, tally_cli):
    keys = make_app(engine, "shop")
    make_app(engine, "plain")
    tally_cli("apps", "set-retention", "shop", "--raw-days", "7")
    tally_cli("apps", "set-redaction", "shop", "--mode", "hash", "--detect", "email", "--pattern", "ORDER=ORD-\\d+")
    add_account(engine, role="admin")
    server = start_server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            old = openai_chat(keys, at_ms=int(time.time() * 1000) - 30 * DAY_MS)
            interaction_id = browser.post("/track", json=old).json()["interaction_id"]
            apply_retention(engine, now=int(time.time() * 1000), data_dir=settings.data_dir)
            assert log_in(browser).status_code == 303
            page = browser.get("/dashboard/access").text
            table = page[page.index('id="app-settings"'):]
            shop, plain = table.index("<td>shop</td>"), table.index("<td>plain</td>")
            assert "hash: email, ORDER" in table[shop:] and "content 7 days, images 7 days" in table[shop:]
            assert plain < shop and "server policy" in table[plain:shop] and "kept forever" in table[plain:shop]
            detail = browser.get(f"/dashboard/interactions/{interaction_id}").text
            assert "raw JSON and images of this interaction were removed by the app" in detail
    finally:
        server.stop()

"""Alerts end to end with a real webhook receiver (an HTTP server in the test): every rule kind fires once per
crossing, however many refreshes see it, and resolves when it clears; deliveries are signed, retried after a
failure and logged; on PostgreSQL two replicas tell each crossing once."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import backend_of, make_app, make_token, start_server, wait_until
from tests.payloads import openai_chat


class Receiver:
    """Records every POST; answers 500 to the first `failures` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.posts: list[tuple[dict, bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failing = receiver.failures > 0
                receiver.failures -= 1
                if not failing:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.posts]

    def statuses(self, subject: str | None = None) -> list[str]:
        return [b["status"] for b in self.bodies() if subject is None or b["subject"] == subject]


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.server.shutdown()


def _server(settings, **overrides):
    return start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2, "alert_delivery_seconds": 0.1,
                                                    **overrides}))


def _rule(tally_cli, kind: str, url: str, *options: str) -> dict:
    return json.loads(tally_cli("alerts", "add", kind, "--webhook", url, "--json", *options))


def _error(keys) -> dict:
    payload = openai_chat(keys)
    payload["response"] = {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}
    return payload


def _settle(seconds: float = 1.0) -> None:
    time.sleep(seconds)  # several refreshes and delivery ticks: a crossing is told once, not at each


def test_an_error_rate_spike_fires_once_is_signed_and_resolves(engine, settings, tally_cli, receiver):
    shop = make_app(engine, "shop")
    rule = _rule(tally_cli, "error_rate", receiver.url, "--app", "shop", "--threshold", "20")
    assert rule["secret"].startswith("whsec_")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(10):
                assert client.post("/track", json=_error(shop)).status_code == 201
            assert wait_until(lambda: receiver.statuses() == ["firing"])
            _settle()
            assert receiver.statuses() == ["firing"]
            headers, body = receiver.posts[0]
            stamp, digest = (part.split("=", 1)[1] for part in headers["tally-signature"].split(","))
            expected = hmac.new(rule["secret"].encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(digest, expected) and abs(int(stamp) - time.time()) < 60
            fired = json.loads(body)
            assert (fired["kind"], fired["subject"], fired["value"]) == ("error_rate", "shop", 100.0)
            assert headers["tally-event-id"] == str(fired["id"]) and "100.0% errors" in fired["message"]
            for _ in range(50):  # 10 errors in 60: under 20 %
                assert client.post("/track", json=openai_chat(shop)).status_code == 201
            assert wait_until(lambda: receiver.statuses() == ["firing", "resolved"])
            _settle()
            assert receiver.statuses() == ["firing", "resolved"]
    finally:
        server.stop()
    history = json.loads(tally_cli("alerts", "history", "--json"))
    assert [(e["status"], e["delivery"], e["attempts"]) for e in history] == [
        ("resolved", "delivered", 1), ("firing", "delivered", 1)]


def test_the_alerts_page_shows_rules_by_host_and_the_history(engine, settings, tally_cli, receiver):
    from tests.dashboard_support import add_account, log_in

    shop = make_app(engine, "shop")
    _rule(tally_cli, "error_rate", receiver.url + "/T0SECRET/B0SECRET", "--threshold", "20")
    add_account(engine, "vic@example.com", "a long passphrase", role="viewer")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            for _ in range(10):
                browser.post("/track", json=_error(shop))
            assert wait_until(lambda: receiver.statuses() == ["firing"])
            log_in(browser, "vic@example.com", "a long passphrase")
            page = browser.get("/dashboard/alerts")
            assert page.status_code == 200 and "error_rate" in page.text and "100.0% errors" in page.text
            assert "delivered" in page.text and "127.0.0.1" in page.text and "SECRET" not in page.text
    finally:
        server.stop()


def test_latency_unpriced_models_and_silence_each_fire_and_resolve(engine, settings, tally_cli, receiver):
    shop = make_app(engine, "shop")
    _rule(tally_cli, "latency", receiver.url, "--threshold", "1000")
    _rule(tally_cli, "unpriced_model", receiver.url, "--window-minutes", "0.05")
    _rule(tally_cli, "silence", receiver.url, "--window-minutes", "0.05")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            now = int(time.time() * 1000)
            for i in range(10):
                slow = openai_chat(shop, at_ms=now - 6000 + i)
                slow["timestamps"]["response"] = slow["timestamps"]["request"] + 5000
                assert client.post("/track", json=slow).status_code == 201
            assert client.post("/track", json=openai_chat(shop, model="house-model-9")).status_code == 201
            kinds = lambda: sorted((b["kind"], b["status"]) for b in receiver.bodies())  # noqa: E731
            assert wait_until(lambda: ("latency", "firing") in kinds() and ("unpriced_model", "firing") in kinds())
            for _ in range(200):
                assert client.post("/track", json=openai_chat(shop)).status_code == 201
            assert wait_until(lambda: ("latency", "resolved") in kinds())
            # Three seconds without an unpriced call: resolved; three without any call: the app went quiet.
            assert wait_until(lambda: ("unpriced_model", "resolved") in kinds() and ("silence", "firing") in kinds(),
                              seconds=20)
            assert client.post("/track", json=openai_chat(shop)).status_code == 201
            assert wait_until(lambda: ("silence", "resolved") in kinds())
            _settle()
            assert kinds() == [("latency", "firing"), ("latency", "resolved"), ("silence", "firing"),
                               ("silence", "resolved"), ("unpriced_model", "firing"), ("unpriced_model", "resolved")]
            unpriced = next(b for b in receiver.bodies() if b["kind"] == "unpriced_model")
            assert unpriced["subject"] == "openai/house-model-9" and "no price" in unpriced["message"]
    finally:
        server.stop()


def test_a_budget_warns_then_fires_then_resolves_and_slack_gets_text(engine, settings, tally_cli, receiver):
    shop = make_app(engine, "shop")
    tally_cli("budgets", "add", "--app", "shop", "--tokens", "100", "--per", "day", "--warn-at", "0.5")
    _rule(tally_cli, "budget", receiver.url, "--app", "shop", "--format", "slack")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            texts = lambda: [json.loads(body)["text"] for _, body in receiver.posts]  # noqa: E731
            assert client.post("/track", json=openai_chat(shop)).status_code == 201  # 52 of 100: past half
            assert wait_until(lambda: len(texts()) == 1)
            assert client.post("/track", json=openai_chat(shop)).status_code == 201  # 104: used up
            assert wait_until(lambda: len(texts()) == 2)
            budget_id = json.loads(tally_cli("budgets", "list", "--json"))[0]["id"]
            tally_cli("budgets", "remove", str(budget_id))
            assert wait_until(lambda: len(texts()) == 3)
            _settle()
            warned, fired, resolved = texts()
            assert "budget warning" in warned and "52 tokens of the 100 tokens per day budget" in warned
            assert "budget firing" in fired and "104 tokens" in fired and "budget resolved" in resolved
            assert len(texts()) == 3
    finally:
        server.stop()


def test_a_failed_delivery_is_logged_and_retried_with_back_off(engine, settings, tally_cli):
    receiver = Receiver(failures=1)
    shop = make_app(engine, "shop")
    _rule(tally_cli, "error_rate", receiver.url, "--threshold", "50")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(10):
                client.post("/track", json=_error(shop))
            history = lambda: json.loads(tally_cli("alerts", "history", "--json"))  # noqa: E731
            assert wait_until(lambda: [event["attempts"] for event in history()] == [1])
            [event] = json.loads(tally_cli("alerts", "history", "--json"))
            assert event["delivery"] == "pending" and event["last_error"].startswith("HTTP 500")
            assert 25_000 <= event["next_attempt_at"] - int(time.time() * 1000) <= 31_000  # 30 s later
            with engine.begin() as conn:  # what the clock does: thirty seconds pass
                conn.execute(text("UPDATE alert_event SET next_attempt_at = 0"))
            assert wait_until(lambda: receiver.statuses() == ["firing"])
            [event] = json.loads(tally_cli("alerts", "history", "--json"))
            assert (event["delivery"], event["attempts"], event["last_error"]) == ("delivered", 2, None)
    finally:
        server.stop()
        receiver.server.shutdown()


def test_two_replicas_tell_each_crossing_once(engine, settings, tally_cli, receiver):
    if backend_of(settings) == "sqlite":
        pytest.skip("one server serves a SQLite store")
    shop = make_app(engine, "shop")
    _rule(tally_cli, "error_rate", receiver.url, "--threshold", "20")
    replicas = [_server(settings, data_dir=settings.data_dir / name, replica=name,
                        database_url=settings.database_url) for name in ("a", "b")]
    try:
        with httpx.Client(base_url=replicas[0].url, timeout=30) as client:
            for _ in range(10):
                client.post("/track", json=_error(shop))
        assert wait_until(lambda: receiver.statuses() == ["firing"])
        _settle(2)
        assert receiver.statuses() == ["firing"]
    finally:
        for replica in replicas:
            replica.stop()


def test_alert_rules_through_the_api_need_an_admin(engine, live_server, receiver):
    make_app(engine, "shop")
    body = {"kind": "silence", "webhook_url": receiver.url, "app": "shop", "window_minutes": 60}
    with httpx.Client(base_url=live_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {make_token(engine, 'export')}"}) as exporter:
        assert exporter.post("/api/v1/alerts", json=body).status_code == 403
    with httpx.Client(base_url=live_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {make_token(engine, 'admin')}"}) as admin:
        made = admin.post("/api/v1/alerts", json=body)
        assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
        listed = admin.get("/api/v1/alerts").json()["rules"]
        assert [r["id"] for r in listed] == [made.json()["id"]] and "secret" not in listed[0]
        for bad, field in (({**body, "webhook_url": "ftp://x"}, "webhook_url"), ({**body, "app": "nope"}, "app"),
                           ({**body, "kind": "latency"}, "threshold")):
            refused = admin.post("/api/v1/alerts", json=bad)
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.text
        assert admin.get("/api/v1/alerts/events").json() == {"events": []}
        assert admin.delete(f"/api/v1/alerts/{made.json()['id']}").status_code == 204
        assert admin.delete(f"/api/v1/alerts/{made.json()['id']}").status_code == 404


def test_concurrent_evaluations_record_each_crossing_once(engine, tally_cli):
    """Eight evaluations at once (as eight replicas after their refresh), over and over: one event per crossing."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlmodel import Session

    from tally.store.alerts import Reading, record_readings
    from tally.store.engine import writing

    rule_id = _rule(tally_cli, "silence", "http://127.0.0.1:9/hook")["id"]

    def evaluate(level: str) -> int:
        with Session(writing(engine)) as db:
            made = record_readings(db, [Reading(rule_id, "shop", level, 1.0, "shop")], {rule_id},
                                   now=int(time.time() * 1000))
            db.commit()
        return len(made)

    with ThreadPoolExecutor(8) as pool:
        told = [sum(pool.map(evaluate, [level] * 8)) for level in ["firing", "ok"] * 10]
    assert told == [1] * 20
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alert_event")).scalar_one() == 20


def test_a_delivery_tick_with_nothing_due_takes_no_write_lock(engine, settings, tally_cli):
    """Every server ticks every few seconds: with nothing due it must not wait for (or hold) SQLite's write lock,
    which the ingest writer needs; here another connection holds it throughout."""
    from tally.analytics.service import Analytics
    from tally.server.alerting import deliver_due, evaluate
    from tally.store.engine import writing

    make_app(engine, "shop")
    _rule(tally_cli, "silence", "http://127.0.0.1:9/hook")
    analytics = Analytics(settings)
    try:
        analytics.refresh()
        with writing(engine).begin(), httpx.Client() as client:  # on SQLite: BEGIN IMMEDIATE, the write lock
            started = time.monotonic()
            assert deliver_due(engine, client) == 0 and evaluate(engine, analytics) == []
            assert time.monotonic() - started < 1
    finally:
        analytics.close()

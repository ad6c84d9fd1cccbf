"""Budgets end to end: made by the real command or the API, counted after each refresh, answered by the check an
app makes with its own keys and in the ingest answer; per user, per model, with unpriced models shown, in calendar
windows of the analytics time zone."""

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from tally.analytics.budgets import BudgetBoard, BudgetRule, Counted, Use, current_window
from tests.conftest import make_app, make_token, start_server, wait_until
from tests.payloads import openai_chat

TOKENS = 52  # per openai_chat interaction: 21 prompt + 31 completion, reported


def _server(settings, **overrides):
    return start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2, **overrides}))


def _check(client: httpx.Client, keys, user: str | None = None) -> dict:
    answer = client.get("/api/v1/budgets/check", params={"user": user} if user else None,
                        headers={"Tally-App-Key": keys.app_key, "Tally-Api-Key": keys.api_key})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _counted_after(client: httpx.Client, keys, at_ms: int, user: str | None = None) -> dict:
    """The check's answer once a count later than `at_ms` is in."""
    found: dict = {}

    def fresh() -> bool:
        found.update(_check(client, keys, user))
        return (found["counted_at"] or 0) > at_ms
    assert wait_until(fresh)
    return found


def test_an_app_budget_allows_then_refuses_and_the_ingest_answer_says_so(engine, settings, tally_cli):
    alpha, beta = make_app(engine, "alpha"), make_app(engine, "beta")
    added = json.loads(tally_cli("budgets", "add", "--app", "alpha", "--tokens", "100", "--per", "day", "--json"))
    assert added["metric"] == "tokens" and added["limit"] == 100 and not added["per_user"]
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            start, end = current_window("day", settings.analytics_timezone, int(time.time() * 1000))
            first = client.post("/track", json=openai_chat(alpha))
            assert first.status_code == 201
            status = _counted_after(client, alpha, int(time.time() * 1000))
            [budget] = status["budgets"]
            assert status["allowed"] and budget["used"] == TOKENS and budget["remaining"] == 100 - TOKENS
            assert (budget["window_start"], budget["resets_at"]) == (start, end)
            assert budget["tokens"] == {"reported": TOKENS, "estimated": 0, "unpriced": 0}
            assert budget["warning"] is False and budget["complete"] is True
            second = client.post("/track", json=openai_chat(alpha))
            assert second.json()["budget"]["allowed"] is True  # as of the last count: one interaction in
            status = _counted_after(client, alpha, int(time.time() * 1000))
            assert not status["allowed"] and status["budgets"][0]["exceeded"] and status["budgets"][0]["remaining"] == 0
            assert client.post("/track", json=openai_chat(alpha)).json()["budget"]["allowed"] is False
            other = client.post("/track", json=openai_chat(beta))
            assert "budget" not in other.json()  # an app without budgets: nothing to say
            quiet = _check(client, beta)
            assert quiet["allowed"] and quiet["budgets"] == []
            wrong = client.get("/api/v1/budgets/check", headers={"Tally-App-Key": alpha.app_key,
                                                                 "Tally-Api-Key": "tk_wrong"})
            assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    finally:
        server.stop()


def test_a_per_user_budget_counts_each_user_and_a_model_budget_its_model(engine, settings, tally_cli):
    alpha = make_app(engine, "alpha")
    tally_cli("budgets", "add", "--app", "alpha", "--tokens", "60", "--per", "hour", "--user-scoped")
    tally_cli("budgets", "add", "--app", "alpha", "--tokens", "1000", "--per", "week", "--model", "gpt-4o")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for user in ({"userId": "u1"}, {"userId": "u1"}, {"email": "Two@Example.com"}):
                assert client.post("/track", json=openai_chat(alpha, user=user, model="gpt-4o")).status_code == 201
            now = int(time.time() * 1000)
            u1 = _counted_after(client, alpha, now, user="u1")
            mine = {b["per_user"]: b for b in u1["budgets"]}
            assert not u1["allowed"] and mine[True]["used"] == 2 * TOKENS and mine[False]["used"] == 3 * TOKENS
            two = _check(client, alpha, user="two@example.com")
            assert two["allowed"] and {b["per_user"]: b["used"] for b in two["budgets"]}[True] == TOKENS
            nobody = _check(client, alpha, user="newcomer")
            assert nobody["allowed"] and {b["per_user"]: b["used"] for b in nobody["budgets"]}[True] == 0
            assert [b["per_user"] for b in _check(client, alpha)["budgets"]] == [False]  # no user: the app's only
    finally:
        server.stop()


def test_a_cost_budget_shows_unpriced_use_rather_than_counting_it_as_free(engine, settings, tally_cli):
    alpha = make_app(engine, "alpha")
    tally_cli("budgets", "add", "--app", "alpha", "--cost", "5", "--per", "month")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/track", json=openai_chat(alpha, model="house-model-7")).status_code == 201
            assert client.post("/track", json=openai_chat(alpha)).status_code == 201
            [budget] = _counted_after(client, alpha, int(time.time() * 1000))["budgets"]
            assert budget["metric"] == "cost" and 0 < budget["used"] < 0.001  # the priced gpt-4o-mini call
            assert budget["tokens"]["unpriced"] == TOKENS and budget["complete"] is False
    finally:
        server.stop()


def test_windows_are_calendar_periods_of_the_analytics_zone(engine, settings, tally_cli):
    """In Asia/Kolkata (UTC+05:30) an hour starts at half past, UTC: what came before it is not counted."""
    zone = "Asia/Kolkata"
    alpha = make_app(engine, "alpha")
    tally_cli("budgets", "add", "--app", "alpha", "--tokens", "1000", "--per", "hour")
    now = int(time.time() * 1000)
    start, end = current_window("hour", zone, now)
    local = datetime.fromtimestamp(start / 1000, ZoneInfo(zone))
    assert (local.minute, end - start) == (0, 3_600_000) and datetime.fromtimestamp(start / 1000).minute in (0, 30)
    server = _server(settings, analytics_timezone=zone)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for at in (start - 60_000, start + 1, now):  # the last minute of the previous hour, then this hour
                assert client.post("/track", json=openai_chat(alpha, at_ms=at)).status_code == 201
            [budget] = _counted_after(client, alpha, int(time.time() * 1000))["budgets"]
            expected = 2 * TOKENS if now > start + 1 else TOKENS  # two in this hour, unless it began this ms
            assert budget["used"] == expected and budget["window_start"] == start
    finally:
        server.stop()


def test_a_window_that_ended_reads_as_unused_until_the_next_count():
    zone = "Europe/Paris"
    before_change = int(datetime(2026, 10, 24, 23, 30, tzinfo=ZoneInfo(zone)).timestamp() * 1000)
    start, end = current_window("day", zone, before_change)
    assert end - start == 24 * 3_600_000
    start2, end2 = current_window("day", zone, end)
    assert end2 - start2 == 25 * 3_600_000  # the day the clocks go back
    week = current_window("week", zone, end)
    assert datetime.fromtimestamp(week[0] / 1000, ZoneInfo(zone)).weekday() == 0
    month = current_window("month", zone, end)
    assert datetime.fromtimestamp(month[1] / 1000, ZoneInfo(zone)) == datetime(2026, 11, 1, tzinfo=ZoneInfo(zone))
    rule = BudgetRule(1, 7, False, "tokens", 100, "day", None, 0.8)
    board = BudgetBoard(zone)
    board.replace([Counted(rule, start, end, Use(tokens=150, reported_tokens=150))], {}, before_change)
    assert board.status(7, None, now_ms=before_change)["allowed"] is False
    after = board.status(7, None, now_ms=end + 1)  # past midnight, before the next count
    assert after["allowed"] and after["budgets"][0]["used"] == 0 and after["budgets"][0]["resets_at"] == end2
    assert after["budgets"][0]["window_start"] == end


def test_budgets_through_the_api_by_scope(engine, live_server):
    make_app(engine, "alpha")
    body = {"app": "alpha", "metric": "tokens", "limit": 500, "period": "week", "per_user": True}
    with httpx.Client(base_url=live_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {make_token(engine, 'read')}"}) as reader:
        assert reader.post("/api/v1/budgets", json=body).status_code == 403
    with httpx.Client(base_url=live_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {make_token(engine, 'export')}"}) as exporter:
        made = exporter.post("/api/v1/budgets", json=body)
        assert made.status_code == 201, made.text
        assert made.json()["users"] == [] and made.json()["period"] == "week"
        for bad, field in (({**body, "app": "nope"}, "app"), ({**body, "limit": 2.5}, "limit"),
                           ({**body, "period": "year"}, "period"), ({**body, "limit": -1}, "limit")):
            refused = exporter.post("/api/v1/budgets", json=bad)
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"].endswith(field), refused.text
        listed = exporter.get("/api/v1/budgets").json()["budgets"]
        assert [b["id"] for b in listed] == [made.json()["id"]]
        assert exporter.delete(f"/api/v1/budgets/{made.json()['id']}").status_code == 204
        assert exporter.delete(f"/api/v1/budgets/{made.json()['id']}").status_code == 404


@pytest.mark.parametrize("arguments, message", [
    (["--tokens", "10", "--cost", "1"], "either --tokens or --cost"),
    (["--tokens", "10", "--per", "fortnight"], "unknown period"),
    (["--cost", "0", "--per", "day"], "above 0"),
    (["--tokens", "10", "--per", "day", "--warn-at", "1.5"], "--warn-at"),
])
def test_the_command_refuses_what_makes_no_budget(engine, tally_cli, arguments, message):
    make_app(engine, "alpha")
    if "--per" not in arguments:
        arguments = [*arguments, "--per", "day"]
    code = 2 if message.startswith("either") else 1
    assert message in tally_cli("budgets", "add", "--app", "alpha", *arguments, code=code)
    assert tally_cli("budgets", "list").strip() == "no budgets"


def test_the_budgets_page_and_the_overview_banner(engine, settings, tally_cli):
    from tests.dashboard_support import add_account, csrf_of, log_in

    alpha = make_app(engine, "alpha")
    add_account(engine, "ana@example.com", "a long passphrase", role="analyst")
    add_account(engine, "vic@example.com", "a long passphrase", role="viewer")
    server = _server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as viewer:
            log_in(viewer, "vic@example.com", "a long passphrase")
            page = viewer.get("/dashboard/budgets")
            assert page.status_code == 200 and "No budget yet" in page.text and "Add a budget" not in page.text
            refused = viewer.post("/dashboard/budgets", data={"csrf": csrf_of(page.text), "app": "alpha",
                                                              "metric": "tokens", "limit": "60", "period": "day"})
            assert refused.status_code == 403
        with httpx.Client(base_url=server.url, timeout=30) as analyst:
            log_in(analyst, "ana@example.com", "a long passphrase")
            csrf = csrf_of(analyst.get("/dashboard/budgets").text)
            bad = analyst.post("/dashboard/budgets", data={"csrf": csrf, "app": "alpha", "metric": "tokens",
                                                           "limit": "many", "period": "day"})
            assert bad.status_code == 422 and "numbers" in bad.text
            added = analyst.post("/dashboard/budgets", data={"csrf": csrf, "app": "alpha", "metric": "tokens",
                                                             "limit": "60", "period": "day"}, follow_redirects=False)
            assert added.status_code == 303
            for _ in range(2):
                assert analyst.post("/track", json=openai_chat(alpha)).status_code == 201
            _counted_after(analyst, alpha, int(time.time() * 1000))
            page = analyst.get("/dashboard/budgets").text
            assert "exceeded" in page and "60 tokens per day" in page
            banner = analyst.get("/dashboard").text
            assert "Budget exceeded" in banner and "alpha" in banner
            budget_id = json.loads(tally_cli("budgets", "list", "--json"))[0]["id"]
            analyst.post(f"/dashboard/budgets/{budget_id}/remove", data={"csrf": csrf})
            assert tally_cli("budgets", "list").strip() == "no budgets"
    finally:
        server.stop()

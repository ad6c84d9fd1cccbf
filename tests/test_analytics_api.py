"""The analytics read API over live data: freshness, filters, provenance, pagination, errors."""

import time

import pytest
from sqlalchemy import text

from tally.analytics.service import Analytics
from tests.conftest import start_server, wait_until
from tests.payloads import openai_chat

BASE = 1_717_000_000_000  # 2024-05-29T16:26:40Z
MINUTE = 60_000


@pytest.fixture
def fast_server(engine, settings):
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))
    yield server
    server.stop()


@pytest.fixture
def api(fast_server, read_token):
    import httpx

    with httpx.Client(base_url=fast_server.url, headers={"Authorization": f"Bearer {read_token}"}) as http:
        yield http


def _track(api, payload):
    answer = api.post("/track", json=payload)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _seed(api, app_keys):
    """Two users, a priced and an unpriced model, reported and estimated usage, one error."""
    payloads = [
        openai_chat(app_keys, user={"userId": "ann", "email": "ann@example.com"}, at_ms=BASE),
        openai_chat(app_keys, user={"userId": "ann"}, at_ms=BASE + MINUTE, usage=False),
        openai_chat(app_keys, user={"userId": "bob", "firstName": "Bob"}, at_ms=BASE + 2 * MINUTE,
                    model="house-model-x"),
        openai_chat(app_keys, user={"userId": "bob"}, at_ms=BASE + 26 * 60 * MINUTE),
    ]
    payloads[3]["response"]["error"] = {"message": "overloaded"}
    answers = [_track(api, p) for p in payloads]
    assert wait_until(lambda: len(api.get("/api/v1/interactions", params={"from": "2024-05-01"}).json()["items"]) == 4)
    return answers


def test_acknowledged_interaction_is_readable_within_seconds(api, app_keys):
    stored = _track(api, openai_chat(app_keys, user={"userId": "fresh"}))
    started = time.monotonic()
    seen = wait_until(lambda: [i for i in api.get("/api/v1/interactions").json()["items"]
                                if i["id"] == stored["interaction_id"]])
    assert seen and time.monotonic() - started < 10
    freshness = api.get("/api/v1/analytics/status").json()
    assert 0 <= freshness["lag_ms"] < 10_000


def test_usage_totals_show_provenance(api, app_keys):
    _seed(api, app_keys)
    totals = api.get("/api/v1/usage/totals", params={"from": "2024-05-01", "to": "2024-06-30"}).json()
    assert (totals["interactions"], totals["errors"], totals["active_users"], totals["sessions"]) == (4, 1, 2, 3)
    assert totals["reported_tokens"] == 3 * 52 and totals["estimated_tokens"] > 0
    assert totals["priced"] == 3 and totals["unpriced"] == 1
    assert totals["unpriced_models"] == [{"provider": "openai", "model": "house-model-x", "interactions": 1}]
    assert totals["cost"] > 0 and totals["estimated_cost"] > 0
    assert totals["latency_p50"] == 850 and "lag_ms" in totals["freshness"]


def test_series_models_and_filters(api, app_keys):
    _seed(api, app_keys)
    window = {"from": "2024-05-29", "to": "2024-05-30"}
    days = api.get("/api/v1/usage", params={**window, "granularity": "day"}).json()["series"]
    assert [(d["bucket"][:10], d["interactions"]) for d in days] == [("2024-05-29", 3), ("2024-05-30", 1)]
    hours = api.get("/api/v1/usage", params={**window, "granularity": "hour"}).json()["series"]
    assert sum(h["interactions"] for h in hours) == 4
    only_model = api.get("/api/v1/usage/totals", params={**window, "model": "house-model-x"}).json()
    assert only_model["interactions"] == 1 and only_model["priced"] == 0
    users = {u["user_id"]: u for u in api.get("/api/v1/users").json()["items"]}
    ann = api.get("/api/v1/usage/totals", params={**window, "user": users["ann"]["id"]}).json()
    assert ann["interactions"] == 2 and ann["estimated_tokens"] > 0
    models = api.get("/api/v1/usage/models", params=window).json()["models"]
    assert {(m["model"], m["interactions"]) for m in models} == {("gpt-4o-mini-2024-07-18", 3), ("house-model-x", 1)}
    active = api.get("/api/v1/usage/active-users", params={**window, "granularity": "day"}).json()["series"]
    assert [a["active_users"] for a in active] == [2, 1]
    top = api.get("/api/v1/usage/top-users", params={**window, "sort": "interactions"}).json()["users"]
    assert [(u["external_id"], u["interactions"]) for u in top] == [("ann", 2), ("bob", 2)]


def test_cursor_pagination_visits_every_row_once(api, app_keys):
    for index in range(7):
        _track(api, openai_chat(app_keys, user={"userId": f"p{index}"}, at_ms=BASE + index * MINUTE))
    assert wait_until(lambda: len(api.get("/api/v1/users", params={"limit": 500}).json()["items"]) == 7)
    for path in ("/api/v1/users", "/api/v1/interactions", "/api/v1/sessions"):
        seen, cursor = [], None
        while True:
            page = api.get(path, params={"limit": 3, "from": "2024-01-01",
                                         **({"cursor": cursor} if cursor else {})}).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 7, path


def test_user_search_and_sessions_filter(api, app_keys):
    _seed(api, app_keys)
    found = api.get("/api/v1/users", params={"search": "ANN@example"}).json()["items"]
    assert [u["user_id"] for u in found] == ["ann"]
    sessions = api.get("/api/v1/sessions", params={"from": "2024-05-01", "user": found[0]["id"]}).json()["items"]
    assert [s["turns"] for s in sessions] == [2]


@pytest.mark.parametrize("path, params, field", [
    ("/api/v1/usage", {"granularity": "minute"}, "granularity"),
    ("/api/v1/usage/active-users", {"granularity": "year"}, "granularity"),
    ("/api/v1/usage", {"from": "2024-06-01", "to": "2024-05-01"}, "from"),
    ("/api/v1/usage/totals", {"from": "yesterday"}, "from"),
    ("/api/v1/usage/totals", {"to": "2024-13-45"}, "to"),
    ("/api/v1/usage/totals", {"user": "ann"}, "user"),
    ("/api/v1/users", {"cursor": "not-a-cursor"}, "cursor"),
    ("/api/v1/users", {"sort": "height"}, "sort"),
    ("/api/v1/interactions", {"limit": 0}, "limit"),
])
def test_bad_filters_are_400_naming_the_parameter(api, path, params, field):
    answer = api.get(path, params=params)
    assert answer.status_code == 400, answer.text
    assert field in {error["field"] for error in answer.json()["errors"]}


def test_tokens_are_required(fast_server):
    import httpx

    assert httpx.get(f"{fast_server.url}/api/v1/usage").status_code == 401
    assert httpx.get(f"{fast_server.url}/api/v1/usage", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_late_arrival_merging_sessions_reaches_analytics(api, app_keys):
    user = {"userId": "late"}
    _track(api, openai_chat(app_keys, user=user, at_ms=BASE))
    _track(api, openai_chat(app_keys, user=user, at_ms=BASE + 15 * MINUTE))
    def sessions():
        return api.get("/api/v1/sessions", params={"from": "2024-05-01"}).json()["items"]
    assert wait_until(lambda: len(sessions()) == 2)
    _track(api, openai_chat(app_keys, user=user, at_ms=BASE + 8 * MINUTE))
    assert wait_until(lambda: [s["turns"] for s in sessions()] == [3])


def test_price_change_recomputes_history(engine, settings, app_keys, tmp_path):
    from tally.ingest.batch import store_batch
    from tally.ingest.keys import VerifiedApp
    from tally.ingest.prepare import prepare
    from tally.ingest.wire import TrackPayload
    from tally.store.secrets import now_ms

    job = prepare(TrackPayload.model_validate(openai_chat(app_keys, at_ms=BASE)), app=VerifiedApp(1, None),
                  received_at=now_ms(), default_timeout_minutes=10)
    with engine.begin() as conn:
        store_batch(conn, [job])
    def cost(a):
        return float(a.warehouse.cursor().execute("SELECT sum(cost) FROM rollup_day").fetchall()[0][0])
    analytics = Analytics(settings)
    analytics.refresh()
    shipped = cost(analytics)
    analytics.close()
    assert shipped == pytest.approx((21 * 0.15 + 31 * 0.60) / 1e6)
    prices = tmp_path / "prices.csv"
    prices.write_text("provider,model,input_per_mtok,cached_input_per_mtok,output_per_mtok,per_image,effective_from\n"
                      "openai,gpt-4o-mini,1.00,,2.00,,2024-07-18\n")
    analytics = Analytics(settings.model_copy(update={"prices_file": prices}))
    assert analytics.refresh().full_rollup
    assert cost(analytics) == pytest.approx((21 * 1.00 + 31 * 2.00) / 1e6)
    analytics.close()


def test_deletion_in_the_store_reaches_analytics(engine, settings, app_keys):
    from tally.ingest.batch import store_batch
    from tally.ingest.keys import VerifiedApp
    from tally.ingest.prepare import prepare
    from tally.ingest.wire import TrackPayload
    from tally.store.secrets import now_ms

    jobs = [prepare(TrackPayload.model_validate(openai_chat(app_keys, user={"userId": "d"}, at_ms=BASE + i)),
                    app=VerifiedApp(1, None), received_at=now_ms(), default_timeout_minutes=10) for i in range(3)]
    with engine.begin() as conn:
        stored = store_batch(conn, jobs)
    analytics = Analytics(settings.model_copy(update={"analytics_verify_seconds": 0}))
    analytics.refresh()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM interaction WHERE id = :id"), {"id": stored[1].interaction_id})
    assert analytics.refresh().deleted == 1
    turns = analytics.warehouse.cursor().execute("SELECT sum(interactions) FROM rollup_hour").fetchall()[0][0]
    analytics.close()
    assert turns == 2

"""Every list on a page or in an answer is capped, with an "other" row or count or a next page: 20,000 models
and a session of 20,000 turns keep pages and answers small, and the totals still add up."""

import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from sqlalchemy import insert
from sqlmodel import Session

from tally.store.models import EndUser, Interaction, InteractionSession
from tests.conftest import start_server, wait_until
from tests.dashboard_support import add_account, log_in
from tests.payloads import openai_chat

MODELS = 20_000
BIG = ("gpt-4o-mini-2024-07-18", "house-a", "house-b")  # 50 interactions each, so the top of every list is known
SMALL_BYTES = 500_000


def _store_many_models(engine, keys) -> int:
    """MODELS interactions, each with a model of its own, plus BIG models with 50 each, in one session of one
    user, written straight into the store (ingesting them one by one would take minutes). Returns the session."""
    now = int(time.time() * 1000)
    payload = openai_chat(keys)
    with Session(engine) as db:
        user = EndUser(app_id=1, external_id="heavy", created_at=now, updated_at=now)
        session = InteractionSession(app_id=1, external_id="marathon", created_at=now)
        db.add_all([user, session])
        db.commit()
        user_id, session_id = user.id, session.id
    template = Interaction(
        app_id=1, user_id=user_id, session_id=session_id, session_key="marathon", provider="openai", type="chat",
        input_text="Tell a cat joke", output_text="Answer", prompt_tokens=21, completion_tokens=31,
        total_tokens=52, usage_source="reported", latency_ms=850,
        request_json=orjson.dumps(payload["request"]).decode(),
        response_json=orjson.dumps(payload["response"]).decode(), received_at=now, updated_at=now,
    ).model_dump(exclude={"id"})
    models = [f"model-{index:05d}" for index in range(MODELS)] + [name for name in BIG for _ in range(50)]
    rows = [{**template, "model": model, "request_at": now - 86_400_000 + index, "response_at": now - 86_400_000
             + index + 850} for index, model in enumerate(models)]
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(Interaction.__table__), rows[start:start + 5000])
    return session_id


@pytest.fixture
def heavy(engine, settings, app_keys, read_token):
    session_id = _store_many_models(engine, app_keys)
    add_account(engine)
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}, timeout=60) as api:
        assert wait_until(lambda: api.get("/api/v1/usage/totals").json()["interactions"] == MODELS + 150, 60)
        yield server, api, session_id
    server.stop()


def _small(answer: httpx.Response) -> httpx.Response:
    assert answer.status_code == 200, answer.text[:500]
    assert len(answer.content) < SMALL_BYTES, (str(answer.url), len(answer.content))
    return answer


def test_answers_stay_small_and_add_up(heavy):
    _, api, session_id = heavy
    totals = _small(api.get("/api/v1/usage/totals")).json()
    unpriced, other = totals["unpriced_models"], totals["unpriced_models_other"]
    assert len(unpriced) == 20 and [m["model"] for m in unpriced[:2]] == ["house-a", "house-b"]
    assert other["models"] == MODELS + 2 - 20
    assert sum(m["interactions"] for m in unpriced) + other["interactions"] == totals["unpriced"] == MODELS + 100

    for limit in (None, 500):
        found = _small(api.get("/api/v1/usage/models", params={"limit": limit} if limit else {})).json()
        rows, rest = found["models"], found["other"]
        assert len(rows) == (limit or 100) and rows[0]["model"] in BIG and rows[0]["latency_p50"] == 850
        assert rest["models"] == MODELS + len(BIG) - len(rows)
        for column in ("interactions", "prompt_tokens", "completion_tokens", "unpriced", "cost"):
            assert sum(row[column] for row in rows) + rest[column] == pytest.approx(totals[column]), column
    only = _small(api.get("/api/v1/usage/models", params={"model": "model-19999"})).json()
    assert [row["model"] for row in only["models"]] == ["model-19999"] and only["other"] is None

    _small(api.get("/api/v1/usage", params={"granularity": "hour"}))
    sessions = _small(api.get("/api/v1/sessions")).json()["items"]
    assert len(sessions[0]["models"].split(", ")) == 5 and sessions[0]["models_more"] == MODELS + len(BIG) - 5


def test_a_long_session_comes_in_pages_that_visit_every_turn_once(heavy):
    _, api, session_id = heavy
    first = _small(api.get(f"/api/v1/sessions/{session_id}")).json()
    assert first["interaction_count"] == MODELS + 150 and len(first["models"]) == 20
    assert first["models_more"] == MODELS + len(BIG) - 20 and first["user_ids"] and first["users_more"] == 0
    assert len({m["interaction_id"] for m in first["messages"]}) == 100
    seen, cursor = [], None
    while True:
        page = _small(api.get(f"/api/v1/sessions/{session_id}",
                              params={"limit": 500, **({"cursor": cursor} if cursor else {})})).json()
        seen += [m["interaction_id"] for m in page["messages"] if m["role"] == "assistant"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == MODELS + 150
    # chat clients resend the history: only the first turn of the whole session says the system prompt
    later = api.get(f"/api/v1/sessions/{session_id}", params={"cursor": first["next_cursor"]}).json()
    assert later["messages"][0]["role"] == "user"


def test_dashboard_pages_stay_small(heavy):
    server, _, session_id = heavy
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        log_in(browser)
        for path in ("/dashboard", "/dashboard/models", "/dashboard/sessions", "/dashboard/users",
                     "/dashboard/interactions", "/dashboard/users/1", f"/dashboard/sessions/{session_id}",
                     "/dashboard/exports", "/dashboard?range=custom&from=1970-01-01&to=9999-12-31"):
            _small(browser.get(path))
        # The axis names the zone it counts in (UTC, unless the clock runs say), as Plotly's JSON spells it.
        zone = server.settings.analytics_timezone.replace("/", "\\u002f")
        assert f"Month ({zone})" in browser.get("/dashboard", params={"range": "custom", "from": "1970-01-01"}).text
        a_year_ago = (datetime.now(UTC) - timedelta(days=400)).date().isoformat()
        assert f"Week ({zone})" in browser.get("/dashboard", params={"range": "custom", "from": a_year_ago}).text
        overview = browser.get("/dashboard").text
        assert "other unpriced models" in overview and overview.count("<option value=\"model-") <= 50
        picked = _small(browser.get("/dashboard/models", params={"model": "model-19999"})).text
        assert 'value="model-19999"' in picked and "1 unpriced model" in picked
        models = browser.get("/dashboard/models").text
        assert "20k other models" in models and models.count("<tr>") <= 52
